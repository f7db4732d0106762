//! Feeds arbitrary bytes to the readers of the models an ivfpq index stores on
//! its pages (`IvfPqModel::from_bytes`, `ResidualSq::from_bytes`). Invariants:
//! they never panic, and a model they accept can encode and score a vector.

#![no_main]

use arrw_core::ivf::IvfPqModel;
use arrw_core::refine::ResidualSq;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sq) = ResidualSq::from_bytes(data) {
        if sq.dim() <= 4096 {
            let r: Vec<f32> = (0..sq.dim()).map(|i| i as f32 * 0.25 - 3.0).collect();
            let mut code = vec![0u8; sq.code_size()];
            let _faithful = sq.encode(&r, &mut code);
            let mut fq = sq.query(&r, true);
            fq.set_list(0, &r);
            let _ = fq.estimate(&code);
            let mut out = vec![0f32; sq.dim()];
            sq.decode_add(&code, &mut out);
        }
    }
    if let Ok(model) = IvfPqModel::from_bytes(data) {
        if model.dim <= 4096 {
            let q: Vec<f32> = (0..model.dim).map(|i| (i % 7) as f32 - 3.0).collect();
            let mut code = vec![0u8; model.code_size()];
            let list = model.encode(&q, &mut code);
            let mut qt = model.query_tables(&q);
            qt.set_list(list);
            let _ = qt.distance(&code);
        }
    }
});
