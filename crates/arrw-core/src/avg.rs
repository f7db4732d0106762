//! `avg(vector)`'s and `avg(halfvec)`'s transition states, as pgvector keeps
//! them: `[count, sum_1, ..., sum_dim]` in a `double precision[]`, `{0}` before
//! the first row. Adding a row follows pgvector's `vector_accum` (dimension
//! check, overflow error). Merging follows pgvector's newer `vector_combine`
//! (after 0.8.6), which tells an empty state by its dimensions: 0.8.6 tells it
//! by its count and raises "vector must have at least 1 dimension" for two
//! empty states, which a parallel `avg` over no rows combines. States a user
//! builds by hand with a count that disagrees with their length therefore
//! merge as in that newer pgvector (tests/pg_regress/sql/vector_aggregates.sql).

use crate::text::{self, VectorError};

/// Adds row `x` to `state` in place when it already holds rows of `x`'s
/// dimensions; `Ok(None)` when `state` is the empty `{0}` and the caller must
/// build `[count + 1, x...]` instead. A sum that overflows to infinity is an
/// error (22003), as is a row of other dimensions (22000).
pub fn accum(state: &mut [f64], x: &[f32]) -> Result<Option<()>, VectorError> {
    let dim = state.len() - 1;
    if dim == 0 {
        return Ok(None);
    }
    text::check_expected_dim(dim as i32, x.len())?;
    // Checked before anything is changed (an error leaves the state as it was).
    if state[1..]
        .iter()
        .zip(x)
        .any(|(&s, &v)| (s + f64::from(v)).is_infinite())
    {
        return Err(VectorError::overflow());
    }
    state[0] += 1.0;
    for (s, &v) in state[1..].iter_mut().zip(x) {
        *s += f64::from(v);
    }
    Ok(Some(()))
}

/// The first row's state: `[count + 1, x...]` (`count` is the empty state's,
/// normally 0).
pub fn first(count: f64, x: &[f32]) -> Vec<f64> {
    let mut s = Vec::with_capacity(x.len() + 1);
    s.push(count + 1.0);
    s.extend(x.iter().map(|&v| f64::from(v)));
    s
}

/// Two partial states merged: counts add up; a state of no dimensions
/// contributes only its count, and the other's sums are taken whole (their
/// dimensions must be valid); otherwise the sums add up, of equal
/// dimensions, without overflow.
pub fn combine(a: &[f64], b: &[f64]) -> Result<Vec<f64>, VectorError> {
    let (d1, d2) = (a.len() - 1, b.len() - 1);
    let n = a[0] + b[0];
    let mut out = match (d1, d2) {
        (0, 0) => vec![0.0],
        (0, _) => {
            text::check_dim(d2)?;
            b.to_vec()
        }
        (_, 0) => {
            text::check_dim(d1)?;
            a.to_vec()
        }
        _ => {
            text::check_dim(d1)?;
            text::check_expected_dim(d1 as i32, d2)?;
            let mut out = Vec::with_capacity(d1 + 1);
            out.push(0.0);
            for (&x, &y) in a[1..].iter().zip(&b[1..]) {
                let v = x + y;
                if v.is_infinite() {
                    return Err(VectorError::overflow());
                }
                out.push(v);
            }
            out
        }
    };
    out[0] = n;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::SqlState;

    fn code(r: Result<Vec<f64>, VectorError>) -> SqlState {
        r.unwrap_err().sqlstate
    }

    /// The newer pgvector's answers to hand-made states; 0.8.6 raises 22000
    /// for the first (two empty states) and keys the next three on the count.
    #[test]
    fn combine_follows_pgvector() {
        assert_eq!(combine(&[0.0], &[0.0]).unwrap(), [0.0]);
        assert_eq!(combine(&[2.0], &[3.0]).unwrap(), [5.0]);
        assert_eq!(combine(&[5.0], &[1.0, 1.0, 1.0]).unwrap(), [6.0, 1.0, 1.0]);
        assert_eq!(
            combine(&[0.0, 1.0, 1.0], &[0.0, 2.0, 2.0]).unwrap(),
            [0.0, 3.0, 3.0]
        );
        assert_eq!(
            code(combine(&[0.0, 5.0], &[0.0, 3.0, 4.0])),
            SqlState::DataException
        );
        assert_eq!(
            combine(&[1.0, 1.0, 2.0], &[2.0, 3.0, 4.0]).unwrap(),
            [3.0, 4.0, 6.0]
        );
        assert_eq!(
            code(combine(&[1.0, f64::MAX], &[1.0, f64::MAX])),
            SqlState::NumericValueOutOfRange
        );
        let wide = vec![0.0; 16_002];
        assert_eq!(code(combine(&[0.0], &wide)), SqlState::ProgramLimitExceeded);
        assert_eq!(code(combine(&wide, &[1.0])), SqlState::ProgramLimitExceeded);
    }

    #[test]
    fn accum_follows_pgvector() {
        let mut s = [1.0, f64::INFINITY];
        assert_eq!(
            accum(&mut s, &[1.0]).unwrap_err().sqlstate,
            SqlState::NumericValueOutOfRange
        );
        let mut s = [1.0, 1.0, 2.0];
        assert_eq!(
            accum(&mut s, &[1.0]).unwrap_err().sqlstate,
            SqlState::DataException
        );
        assert_eq!(s, [1.0, 1.0, 2.0]);
        accum(&mut s, &[2.0, 3.0]).unwrap();
        assert_eq!(s, [2.0, 3.0, 5.0]);
        assert!(accum(&mut [0.0], &[1.0]).unwrap().is_none());
        assert_eq!(first(0.0, &[1.5, -2.0]), [1.0, 1.5, -2.0]);
    }
}
