//! Prefiltering: the query's own `WHERE` clause checked on the rows an ivfpq
//! scan reads from the table, before they take a place in its exact order.
//!
//! Why: PostgreSQL hands an index access method only the conditions on the
//! index's own columns. A filter on any other column (`WHERE category = $2`)
//! is the executor's: it checks each row the scan hands out and drops the
//! rest. To hand out ten rows that pass a 10% filter, nearest first, the scan
//! had to hand out about a hundred in exact order, and each of the ninety the
//! executor then dropped cost what a returned row costs: at 768 dimensions and
//! more a TOAST read of its vector, and the executor's own fetch of the row
//! and check of the filter (bench/README.md, "Filtered search").
//!
//! How: our `ExecutorStart_hook` (executor_hook.rs) calls [`attach`] once the plan's
//! state tree is built. For each index scan node on an ivfpq index that has a
//! filter (`IndexScanState.ss.ps.qual`), it begins the node's index scan
//! itself, exactly as the executor's `IndexNext` would on its first call
//! (same relations, snapshot and key counts, and the rescan when the keys are
//! known already), and gives the scan a [`Prefilter`] on the node (fetch.rs,
//! where it is used). When the scan reads a row whose vector is out of line
//! (TOAST) or compressed from the table to re-rank it, fetch.rs checks the
//! node's filter on that row first (a row whose vector is in line costs
//! nothing more to hand out, and the executor filters it as before, except
//! while the scan holds the rows a `LIMIT` will take: see below), in an expression context of
//! its own in the node's executor state. A row the filter rejects is treated
//! like a row with no visible version: it is never handed out, and its vector
//! is not read from TOAST once the scan has learnt its margins from a few
//! dozen rows (an in-line one, and every one before that, still gives its
//! exact distance, so that the margins of `arrw_core::rerank` learn from it:
//! a scan that learnt from its passing rows alone let MaxSim rows out of
//! order). The executor still
//! checks the filter on every row it gets, so a query returns the same rows in
//! the same order, with or without this.
//!
//! What a user sees change: `EXPLAIN ANALYZE`'s "Rows Removed by Filter"
//! counts only the rows the scan did not remove itself. A filter is evaluated
//! on every row the scan re-ranks, also on rows the plain plan would never
//! have reached before its `LIMIT`: a filter that raises an ERROR for some
//! rows (a division by zero, a failing cast) may raise it here where it would
//! not have. Filters with volatile functions (which must run once per row
//! returned) or subqueries (whose volatility is not visible from here) are
//! left to the executor alone; `SET ivfpq.prefilter = off` leaves every filter
//! to it. Row-level security keeps its guarantee: the node's filter is one
//! expression with the policies' conditions first, evaluated here in the same
//! order as by the executor.
//!
//! **The `LIMIT` above a scan.** PostgreSQL does not tell an index scan how
//! many rows its plan will take (`ExecSetTupleBound` stops at sorts and
//! appends). A scan starts from its index's `LIMIT 10` default and goes to
//! its deep default once 10 rows are out; under a `LIMIT 100` the rows of the
//! lists it adds then can be closer than rows already handed out, and came
//! after them (about a quarter of `LIMIT 100` answers had such a row). So the
//! same walk looks at each `Limit` node right above an ivfpq index scan:
//! when its count (and offset) are constants or the statement's parameters and
//! add up to 2 rows or more, it begins the scan as above and tells it the sum
//! (`scan::set_rows_wanted`): the scan hands out none of those rows before the
//! last of them is settled (`arrw_core::rerank::OrderedRerank::hold_first`:
//! a list probed for a deeper row could otherwise hold a row closer than one
//! already handed out), and one told more than 10 starts at its deep default.
//! Held rows must be rows the plan will take: with a filter, the scan checks
//! it also on rows whose vector is in line, while it holds and only on rows
//! near enough to be held (`OrderedRerank::hold_bar`; fetch.rs), and never
//! hands out the rows it rejects. Otherwise the first rows handed out, most
//! of which the executor then dropped, were held, and the rows it kept came
//! as they were settled.
//!
//! MaxSim scans of `vector[]` check the filter on every row they re-rank
//! (maxsim_scan.rs: a row costs a MaxSim of its array, so the check is cheap
//! beside it), for the same reason: a hold that counted the rows the executor
//! then drops let 7 of 30 `WHERE id % 7 = 0 ... LIMIT 30` answers out of order.
//!
//! Not prefiltered: scans that read rows one at a time (expression indexes,
//! tables of other access methods, see `scan::exact_batch`), scans begun outside the executor's start (an
//! `EvalPlanQual` recheck, our own functions' scans), `EXPLAIN` without
//! `ANALYZE` (no scan runs), and scans whose node has no filter.

use super::fetch::Prefilter;
use super::options;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Called by our `ExecutorStart_hook` after the plan's state tree is built:
/// begins the scan of every ivfpq index scan node with a filter that may be
/// prefiltered, with a [`Prefilter`] on the node (see the module docs), and
/// of every one right below a `LIMIT`, telling it the rows the plan will take.
///
/// # Safety
/// `qd` is the QueryDesc `ExecutorStart` was called with, started.
#[pg_guard]
pub unsafe extern "C-unwind" fn attach(qd: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as std::ffi::c_int != 0 {
        return;
    }
    // SAFETY: forwarded contract: a started QueryDesc's planstate is its
    // tree's root (or null), built in its executor state.
    unsafe { walk((*qd).planstate) };
}

/// Visits every node of a plan state tree, as PostgreSQL's
/// `planstate_tree_walker` does (its init plans, both subtrees, the children
/// of the nodes that keep them elsewhere, its subplans).
///
/// # Safety
/// `ps` is null or a node of a plan state tree being started.
unsafe fn walk(ps: *mut pg_sys::PlanState) {
    if ps.is_null() {
        return;
    }
    // Plan trees nest as deep as a query's joins: PostgreSQL's own check.
    // SAFETY: a plain C function with no arguments.
    unsafe { pg_sys::check_stack_depth() };
    // SAFETY: forwarded contract; each node's type tag says which struct it
    // is, and the child arrays hold as many entries as their counts say.
    unsafe {
        visit(ps);
        walk_subplans((*ps).initPlan);
        walk((*ps).lefttree);
        walk((*ps).righttree);
        let many = |nodes: *mut *mut pg_sys::PlanState, n: i32| {
            for i in 0..n.max(0) as usize {
                walk(*nodes.add(i));
            }
        };
        match (*ps).type_ {
            pg_sys::NodeTag::T_AppendState => {
                let a = ps as *mut pg_sys::AppendState;
                many((*a).appendplans, (*a).as_nplans);
            }
            pg_sys::NodeTag::T_MergeAppendState => {
                let m = ps as *mut pg_sys::MergeAppendState;
                many((*m).mergeplans, (*m).ms_nplans);
            }
            pg_sys::NodeTag::T_BitmapAndState => {
                let b = ps as *mut pg_sys::BitmapAndState;
                many((*b).bitmapplans, (*b).nplans);
            }
            pg_sys::NodeTag::T_BitmapOrState => {
                let b = ps as *mut pg_sys::BitmapOrState;
                many((*b).bitmapplans, (*b).nplans);
            }
            pg_sys::NodeTag::T_SubqueryScanState => {
                walk((*(ps as *mut pg_sys::SubqueryScanState)).subplan);
            }
            pg_sys::NodeTag::T_CustomScanState => {
                let list = (*(ps as *mut pg_sys::CustomScanState)).custom_ps;
                if !list.is_null() {
                    for i in 0..(*list).length as usize {
                        walk((*(*list).elements.add(i)).ptr_value as *mut pg_sys::PlanState);
                    }
                }
            }
            _ => {}
        }
        walk_subplans((*ps).subPlan);
    }
}

/// The plan trees of a list of `SubPlanState`s (null: none).
///
/// # Safety
/// `list` is null or a List of SubPlanState pointers of a tree being started.
unsafe fn walk_subplans(list: *mut pg_sys::List) {
    if list.is_null() {
        return;
    }
    // SAFETY: forwarded contract: `length` entries, each a SubPlanState.
    unsafe {
        for i in 0..(*list).length as usize {
            let sps = (*(*list).elements.add(i)).ptr_value as *mut pg_sys::SubPlanState;
            if !sps.is_null() {
                walk((*sps).planstate);
            }
        }
    }
}

/// At a `Limit` node above ivfpq index scans (right above, or through nodes
/// that pass rows on in their order: see [`limited_scans`]), tells each scan
/// how many rows the plan will take (see [`limit_rows`]; scan.rs starts a scan
/// that will hand out more than its first rows at its deep default, and holds
/// that many rows before the first leaves). At an ivfpq index scan node with
/// a filter that may be prefiltered, begins its scan with a [`Prefilter`].
///
/// # Safety
/// `ps` is a node of a plan state tree being started (not null).
unsafe fn visit(ps: *mut pg_sys::PlanState) {
    // SAFETY: forwarded contract; a node tagged T_LimitState is one, built
    // from a Limit plan.
    unsafe {
        if (*ps).type_ == pg_sys::NodeTag::T_LimitState {
            let mut scans = Vec::new();
            limited_scans((*ps).lefttree, None, &mut scans);
            if scans.is_empty() {
                return;
            }
            let Some(rows) = limit_rows(ps as *mut pg_sys::LimitState) else {
                return;
            };
            for (node, kept) in scans {
                if let Some(scan) = begin(node, true) {
                    let filtered = kept.is_some() || !(*node).qual.is_null();
                    let hold = hold_for(node, scan, rows, kept.unwrap_or(1.0));
                    // The held rows are the LIMIT's when nothing on the way
                    // drops rows but a filter the scan checks itself.
                    let exact = kept.is_none()
                        && ((*node).qual.is_null() || super::scan::checks_filter(scan));
                    super::scan::set_rows_wanted(scan, rows, filtered, hold, exact);
                }
            }
        } else {
            begin(ps, false);
        }
    }
}

/// The ivfpq index scan nodes whose rows reach a `Limit` in their order:
/// the `Limit`'s child itself, or found through nodes that pass rows on in
/// their input's order (`MergeAppend` and `Append` of partitions, `LockRows` of
/// `FOR UPDATE`, `ProjectSet` of a set-returning function, `Unique` of
/// `DISTINCT ON`, `Result`, a subquery's scan, and the outer side of a join),
/// each with the share of its
/// rows the planner expects to reach the `Limit` when nodes on the way may
/// drop some (a join, a filter, a lock not taken; None: none may). Only a
/// `Limit` right above a scan was seen before, and the first rows of a
/// partitioned table's `ORDER BY ... LIMIT 100` left out of order in 23 of
/// 50 queries (as of a scan with no `LIMIT`; `FOR UPDATE`, a set-returning
/// function, a join: 7–9 of 50).
///
/// # Safety
/// `ps` is null or a node of a plan state tree being started.
unsafe fn limited_scans(
    ps: *mut pg_sys::PlanState,
    kept: Option<f64>,
    out: &mut Vec<(*mut pg_sys::PlanState, Option<f64>)>,
) {
    if ps.is_null() {
        return;
    }
    // SAFETY: forwarded contract; each node's type tag says which struct it
    // is, and the child arrays hold as many entries as their counts say; a
    // node's plan is set while its state is being started.
    unsafe {
        pg_sys::check_stack_depth();
        if is_ivfpq_scan_node(ps) {
            out.push((ps, kept));
            return;
        }
        // The share of `child`'s rows this node passes on, by the plan's
        // estimates (a join may multiply them: at most all).
        let share = |child: *mut pg_sys::PlanState| -> Option<f64> {
            let (mine, theirs) = ((*(*ps).plan).plan_rows, (*(*child).plan).plan_rows);
            let s = if theirs > 0.0 {
                (mine / theirs).clamp(1e-3, 1.0)
            } else {
                1.0
            };
            Some(kept.unwrap_or(1.0) * s)
        };
        let qual = !(*ps).qual.is_null();
        match (*ps).type_ {
            pg_sys::NodeTag::T_MergeAppendState => {
                let m = ps as *mut pg_sys::MergeAppendState;
                for i in 0..(*m).ms_nplans.max(0) as usize {
                    limited_scans(*(*m).mergeplans.add(i), kept, out);
                }
            }
            pg_sys::NodeTag::T_AppendState => {
                let a = ps as *mut pg_sys::AppendState;
                for i in 0..(*a).as_nplans.max(0) as usize {
                    limited_scans(*(*a).appendplans.add(i), kept, out);
                }
            }
            pg_sys::NodeTag::T_SubqueryScanState => {
                let q = ps as *mut pg_sys::SubqueryScanState;
                let k = if qual { share((*q).subplan) } else { kept };
                limited_scans((*q).subplan, k, out);
            }
            // Not a WindowAgg: a window can read rows past the ones the
            // LIMIT takes (`lead()`, a FOLLOWING frame), which left unsettled
            // (37 of 200 `lead()` answers out of order under a LIMIT 10).
            pg_sys::NodeTag::T_ResultState => {
                let k = if qual { share((*ps).lefttree) } else { kept };
                limited_scans((*ps).lefttree, k, out);
            }
            // A set-returning function may return no row for a row (25 of 50
            // `LIMIT 100` answers were out of order where 90% of rows had an
            // empty array to unnest), and DISTINCT ON drops rows.
            pg_sys::NodeTag::T_ProjectSetState | pg_sys::NodeTag::T_UniqueState => {
                limited_scans((*ps).lefttree, share((*ps).lefttree), out)
            }
            pg_sys::NodeTag::T_LockRowsState => {
                limited_scans((*ps).lefttree, Some(kept.unwrap_or(1.0)), out)
            }
            pg_sys::NodeTag::T_NestLoopState
            | pg_sys::NodeTag::T_MergeJoinState
            | pg_sys::NodeTag::T_HashJoinState => {
                limited_scans((*ps).lefttree, share((*ps).lefttree), out)
            }
            _ => {}
        }
    }
}

/// Rows a scan under a `Limit` of `rows` holds before the first leaves: the
/// `Limit`'s rows, or more when rows it hands out are dropped before they
/// reach the `Limit` by what the scan cannot check itself (its node's filter
/// with `ivfpq.prefilter` off, a volatile function or a subquery in it, a
/// row-level security policy with one, an expression index; a join above it):
/// as many as the planner expects to pass for that many (`rows` over the
/// share that passes, `kept` times the filter's selectivity). The executor
/// drops some of the rows held, and those that reached the `Limit` in their
/// place had left unsettled (199 of 200 `LIMIT 100` answers behind a 10%
/// filter had a row out of order with `ivfpq.prefilter` off; a semi-join, 4
/// rows of one answer).
///
/// # Safety
/// `node` is an ivfpq index scan node being started and `scan` its begun scan.
unsafe fn hold_for(
    node: *mut pg_sys::PlanState,
    scan: pg_sys::IndexScanDesc,
    rows: u64,
    kept: f64,
) -> u64 {
    // SAFETY: forwarded contract: the node's plan and relations are set.
    unsafe {
        let mut share = kept;
        if !(*node).qual.is_null() && !super::scan::checks_filter(scan) {
            let tuples = f64::from((*(*(*scan).heapRelation).rd_rel).reltuples);
            let passing = (*(*node).plan).plan_rows;
            if tuples > 0.0 && passing > 0.0 {
                share *= (passing / tuples).clamp(1e-3, 1.0);
            }
        }
        (rows as f64 / share.clamp(1e-3, 1.0)).ceil() as u64
    }
}

/// Rows a `Limit` node will take from its input: its count plus its offset,
/// when both are constants or the statement's parameters (a `LIMIT` fed by a
/// subquery, or with no count, says nothing here).
///
/// # Safety
/// `ls` is a started `LimitState` of a plan state tree being started.
unsafe fn limit_rows(ls: *mut pg_sys::LimitState) -> Option<u64> {
    // SAFETY: forwarded contract: the state's expressions were built from its
    // plan's, and its expression context is the node's.
    unsafe {
        let plan = (*ls).ps.plan as *mut pg_sys::Limit;
        let count = value_of(
            (*plan).limitCount,
            (*ls).limitCount,
            (*ls).ps.ps_ExprContext,
        )?;
        let offset = if (*plan).limitOffset.is_null() {
            0
        } else {
            value_of(
                (*plan).limitOffset,
                (*ls).limitOffset,
                (*ls).ps.ps_ExprContext,
            )?
        };
        Some(count.saturating_add(offset))
    }
}

/// The non-negative int8 an expression of a `Limit` gives (what
/// `recompute_limits` would compute on the node's first row), when it depends
/// only on constants and the statement's own parameters (`LIMIT 100`, `LIMIT
/// $2`, a widening cast of them: [`certain`]); None for anything else (a sum,
/// a subquery's value, an outer row's, a function call), and for NULL.
///
/// # Safety
/// `expr` is null or the plan expression `state` was built from, in `econtext`.
unsafe fn value_of(
    expr: *mut pg_sys::Node,
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
) -> Option<u64> {
    if expr.is_null() || state.is_null() || econtext.is_null() {
        return None;
    }
    // A plan expression with no executor parameters (PARAM_EXEC: subquery
    // outputs, outer rows), subplans or volatile functions reads only
    // constants and the statement's bound parameters (through the parameter
    // hook when there is one), as the node's own first evaluation will.
    // SAFETY: forwarded contract, and the above; it allocates only in the
    // per-tuple context it runs in.
    unsafe {
        // Only what cannot fail nor change before the Limit node reads it
        // ([`certain`]): a stable function (`current_setting(...)`) gave the
        // node another number on its first row than here (a cursor opened at
        // 2 and fetched at 60 held 2 rows: 23 of 100 out of order), and
        // `LIMIT 100 / $1` raised division by zero in a plan part that never
        // ran (an InitPlan a CASE skipped).
        let d = if certain(expr) {
            evaluate(state, econtext)??
        } else if immutable_over_params(expr) && !pg_sys::IsInParallelMode() {
            // `LIMIT $2 + 1`, a numeric parameter cast to bigint, `least($2,
            // 1000)`: the same value on the node's first row, but it may fail
            // (an overflow, a division by zero in a plan part that never
            // runs), so it is computed in a subtransaction, and a failure
            // leaves the `LIMIT` unknown to the scan; the node raises it, if
            // it ever computes it. (Such LIMITs of generic plans were unknown:
            // 18 of 60 `LIMIT 300` answers out of order past the 100 held
            // rows, hunt-160.) Not in parallel mode, which allows no
            // subtransaction (a function's query run by a parallel worker).
            // An ERROR it raises is caught by the boundary, and the
            // subtransaction rolled back.
            let r = crate::subxact::subxact(false, || {
                pg_sys::ffi::pg_guard_ffi_boundary(|| evaluate(state, econtext))
            });
            match r {
                Ok(d) => d??,
                Err(e) => {
                    // Whatever the expression raised (out of range, a NaN
                    // cast to bigint, a length too large: any class, hunt-161)
                    // is the Limit node's to raise, if it runs; but a cancel
                    // or a shutdown (class 57) that arrived meanwhile is not
                    // the expression's, and must not be lost.
                    let class = |c: PgSqlErrorCode| (c as i32) & 0xFFF;
                    let code = crate::errors::report_of(&e).sql_error_code();
                    if class(code) == class(PgSqlErrorCode::ERRCODE_OPERATOR_INTERVENTION) {
                        e.rethrow();
                    }
                    return None;
                }
            }
        } else {
            return None;
        };
        u64::try_from(d.value() as i64).ok()
    }
}

/// Evaluates an expression state in `econtext`'s per-tuple memory, as the
/// node's own first evaluation would: None when the state has no function,
/// Some(None) for NULL. The one evaluator of the values this file reads at
/// executor start (a `LIMIT`'s, a distance threshold's).
///
/// # Safety
/// `state` was built for the node `econtext` belongs to, in a started plan.
unsafe fn evaluate(
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
) -> Option<Option<pg_sys::Datum>> {
    // SAFETY: forwarded contract; the evaluation allocates only in the
    // per-tuple context it runs in.
    unsafe {
        let eval = (*state).evalfunc?;
        let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
        let mut isnull = false;
        let d = eval(state, econtext, &mut isnull);
        pg_sys::MemoryContextSwitchTo(old);
        Some((!isnull).then_some(d))
    }
}

/// Whether a `LIMIT` expression reads only constants and the statement's
/// bound parameters through PostgreSQL's own immutable functions and
/// operators (and `LEAST`/`GREATEST` of them): computed at executor start it
/// gives the value the `Limit` node will, though it may fail where the node
/// would not run it ([`value_of`] computes it in a subtransaction). A
/// function a role defined, even one marked immutable, is never called here:
/// it may do what the plan would not (a `RAISE NOTICE` in a `CASE` branch
/// never taken, hunt-161).
///
/// # Safety
/// `expr` is a plan expression node (not null).
unsafe fn immutable_over_params(expr: *mut pg_sys::Node) -> bool {
    // SAFETY: forwarded contract; each node's tag says which struct it is,
    // and argument lists hold expression nodes.
    unsafe {
        let args_ok = |list: *mut pg_sys::List| {
            pgrx::PgList::<pg_sys::Node>::from_pg(list)
                .iter_ptr()
                .all(|a| !a.is_null() && immutable_over_params(a))
        };
        let immutable = |f: pg_sys::Oid| {
            u32::from(f) < pg_sys::FirstNormalObjectId
                && pg_sys::func_volatile(f) == pg_sys::PROVOLATILE_IMMUTABLE as std::ffi::c_char
        };
        match (*expr).type_ {
            pg_sys::NodeTag::T_Const
            | pg_sys::NodeTag::T_Param
            | pg_sys::NodeTag::T_RelabelType => certain(expr),
            pg_sys::NodeTag::T_FuncExpr => {
                let f = expr as *mut pg_sys::FuncExpr;
                immutable((*f).funcid) && args_ok((*f).args)
            }
            pg_sys::NodeTag::T_OpExpr => {
                let o = expr as *mut pg_sys::OpExpr;
                pg_sys::set_opfuncid(o);
                immutable((*o).opfuncid) && args_ok((*o).args)
            }
            pg_sys::NodeTag::T_MinMaxExpr => {
                let m = expr as *mut pg_sys::MinMaxExpr;
                args_ok((*m).args)
            }
            _ => false,
        }
    }
}

/// Whether a `LIMIT` expression is a constant, a bound parameter of the
/// statement, or a widening cast of one to `bigint` (what `LIMIT 100`, `LIMIT
/// $1` and a PL/pgSQL integer variable plan to): computed at executor start
/// it can neither fail nor differ from what the Limit node computes on its
/// first row. Anything else is an unknown `LIMIT` to the scan.
///
/// # Safety
/// `expr` is a plan expression node (not null).
unsafe fn certain(expr: *mut pg_sys::Node) -> bool {
    // SAFETY: forwarded contract; each node's tag says which struct it is,
    // and a FuncExpr's argument list holds expression nodes.
    unsafe {
        match (*expr).type_ {
            pg_sys::NodeTag::T_Const => true,
            pg_sys::NodeTag::T_Param => {
                (*(expr as *mut pg_sys::Param)).paramkind == pg_sys::ParamKind::PARAM_EXTERN
            }
            pg_sys::NodeTag::T_RelabelType => {
                certain((*(expr as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node)
            }
            pg_sys::NodeTag::T_FuncExpr => {
                let f = expr as *mut pg_sys::FuncExpr;
                let args = pgrx::PgList::<pg_sys::Node>::from_pg((*f).args);
                let cast = matches!(
                    (*f).funcformat,
                    pg_sys::CoercionForm::COERCE_IMPLICIT_CAST
                        | pg_sys::CoercionForm::COERCE_EXPLICIT_CAST
                );
                cast && (*f).funcresulttype == pg_sys::INT8OID
                    && args.len() == 1
                    && args.get_ptr(0).is_some_and(|a| {
                        matches!(pg_sys::exprType(a), pg_sys::INT2OID | pg_sys::INT4OID)
                            && certain(a)
                    })
            }
            _ => false,
        }
    }
}

/// Whether `ps` is an index scan node on an ivfpq index ordering by distance.
///
/// # Safety
/// `ps` is null or a node of a plan state tree being started.
unsafe fn is_ivfpq_scan_node(ps: *mut pg_sys::PlanState) -> bool {
    // SAFETY: forwarded contract; a node tagged T_IndexScanState is one.
    unsafe {
        if ps.is_null() || (*ps).type_ != pg_sys::NodeTag::T_IndexScanState {
            return false;
        }
        let node = ps as *mut pg_sys::IndexScanState;
        let index = (*node).iss_RelationDesc;
        !index.is_null() && (*node).iss_NumOrderByKeys > 0 && is_ivfpq(index)
    }
}

/// Begins the scan of `ps` when it is an ivfpq index scan node ordering by
/// distance, not yet begun, and either `always` or its filter may be
/// prefiltered (no volatile functions nor subqueries, `ivfpq.prefilter` on):
/// then with a [`Prefilter`]. Returns the node's scan, begun here or before
/// (None for other nodes, and when it was not begun).
///
/// # Safety
/// `ps` is null or a node of a plan state tree being started.
unsafe fn begin(ps: *mut pg_sys::PlanState, always: bool) -> Option<pg_sys::IndexScanDesc> {
    // The node's relation descriptors are null only under EXPLAIN without
    // ANALYZE (excluded by the caller, and checked again below).
    // SAFETY: forwarded contract; a node tagged T_IndexScanState is one, and
    // its plan an IndexScan whose `qual` the state's `qual` was built from.
    unsafe {
        if !is_ivfpq_scan_node(ps) {
            return None;
        }
        let node = ps as *mut pg_sys::IndexScanState;
        let index = (*node).iss_RelationDesc;
        if !(*node).iss_ScanDesc.is_null() {
            return Some((*node).iss_ScanDesc);
        }
        let filter = !(*ps).qual.is_null() && options::PREFILTER.get() && {
            let qual = (*(*ps).plan).qual as *mut pg_sys::Node;
            !pg_sys::contain_volatile_functions(qual) && !pg_sys::contain_subplans(qual)
        };
        let ceiling = distance_ceiling(node);
        if !filter && !always && ceiling.is_none() {
            return None;
        }
        // What IndexNext does on its first call, in the memory it would use
        // (the query's: the executor runs nodes there).
        let estate = (*ps).state;
        let old = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
        let scan = pg_sys::index_beginscan(
            (*node).ss.ss_currentRelation,
            index,
            (*estate).es_snapshot,
            (*node).iss_NumScanKeys,
            (*node).iss_NumOrderByKeys,
        );
        (*node).iss_ScanDesc = scan;
        if filter {
            super::scan::set_prefilter(scan, Prefilter::new(node));
        }
        if let Some((c, inclusive)) = ceiling {
            super::scan::set_distance_ceiling(scan, c, inclusive);
        }
        // Keys that depend on run-time values are computed by the node's first
        // rescan (ExecIndexScan calls it before the first row), which then
        // rescans this descriptor.
        if (*node).iss_NumRuntimeKeys == 0 || (*node).iss_RuntimeKeysReady {
            pg_sys::index_rescan(
                scan,
                (*node).iss_ScanKeys,
                (*node).iss_NumScanKeys,
                (*node).iss_OrderByKeys,
                (*node).iss_NumOrderByKeys,
            );
        }
        pg_sys::MemoryContextSwitchTo(old);
        Some(scan)
    }
}

/// The tightest conjunct of an ivfpq scan node's filter that keeps only rows
/// nearer than a distance: the node's ORDER BY expression `D`, or a linear
/// form of it (`1 - D`, `-D`, `D * -1`, `D + k`, with constants or bound
/// parameters), compared with a constant or a bound parameter by
/// PostgreSQL's own `float8` (or `float8`/`float4`) `<`, `<=`, `>` or `>=`
/// so that it keeps rows below a distance: `embedding <=> $1 < 0.3`, `0.3 >
/// embedding <=> $1`, `1 - (embedding <=> $1) > 0.7` (a cosine similarity),
/// `(embedding <#> $1) * -1 > 0.5` (an inner product). Returns that distance
/// and whether a row at it is kept (see `scan::set_distance_ceiling`); None
/// when there is no such conjunct, or a value in it is NULL.
///
/// # Safety
/// `node` is an ivfpq index scan node of a plan state tree being started.
unsafe fn distance_ceiling(node: *mut pg_sys::IndexScanState) -> Option<(f64, bool)> {
    // The operators by their fixed OIDs (pg_operator.dat), so that one a
    // role created under the same name elsewhere on the search path is never
    // taken for them. Comparisons: (true when the left side is the lesser,
    // a row equal to the bound kept).
    const COMPARISONS: [(u32, bool, bool); 12] = [
        (672, true, false),   // float8 < float8
        (673, true, true),    // float8 <= float8
        (674, false, false),  // float8 > float8
        (675, false, true),   // float8 >= float8
        (1132, true, false),  // float8 < float4
        (1134, true, true),   // float8 <= float4
        (1133, false, false), // float8 > float4
        (1135, false, true),  // float8 >= float4
        (1122, true, false),  // float4 < float8
        (1124, true, true),   // float4 <= float8
        (1123, false, false), // float4 > float8
        (1125, false, true),  // float4 >= float8
    ];
    // SAFETY: forwarded contract; the node's plan is an IndexScan, whose
    // qual and indexorderbyorig are lists of expression nodes; each node's
    // tag says which struct it is.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::IndexScan;
        let orderby = pgrx::PgList::<pg_sys::Node>::from_pg((*plan).indexorderbyorig);
        let key = orderby.get_ptr(0)?;
        let quals = pgrx::PgList::<pg_sys::Node>::from_pg((*plan).scan.plan.qual);
        let mut best: Option<(f64, bool)> = None;
        for q in quals.iter_ptr() {
            if (*q).type_ != pg_sys::NodeTag::T_OpExpr {
                continue;
            }
            let op = q as *mut pg_sys::OpExpr;
            let args = pgrx::PgList::<pg_sys::Node>::from_pg((*op).args);
            let (Some(a), Some(b)) = (args.get_ptr(0), args.get_ptr(1)) else {
                continue;
            };
            let opno = u32::from((*op).opno);
            let Some(&(_, left_less, inclusive)) = COMPARISONS.iter().find(|c| c.0 == opno) else {
                continue;
            };
            let (less, greater) = if left_less { (a, b) } else { (b, a) };
            // `o + s·D < c` with s > 0, or `c < o + s·D` with s < 0: D below
            // (c − o) / s.
            // A NULL bound keeps no row, nor does `NaN < x` (NaN sorts
            // above every float8): -inf ends the scan at once. `x < NaN`
            // keeps every row but NaN ones: no ceiling.
            let ceiling = if let Some((s, o)) = linear_in(node, less, key).filter(|l| l.0 > 0.0) {
                match bound_of(node, greater) {
                    Some(None) => Some(f64::NEG_INFINITY),
                    Some(Some(c)) if !c.is_nan() => Some(solve(c, s, o)),
                    _ => None,
                }
            } else if let Some((s, o)) = linear_in(node, greater, key).filter(|l| l.0 < 0.0) {
                match bound_of(node, less) {
                    Some(None) => Some(f64::NEG_INFINITY),
                    Some(Some(c)) if c.is_nan() => Some(f64::NEG_INFINITY),
                    Some(Some(c)) => Some(solve(c, s, o)),
                    None => None,
                }
            } else {
                None
            };
            let Some(c) = ceiling.filter(|c| !c.is_nan()) else {
                continue;
            };
            best = match best {
                Some((b, bi)) if b < c || (b == c && !bi) => Some((b, bi)),
                _ => Some((c, inclusive)),
            };
        }
        best
    }
}

/// The distance `D` at which `o + s·D` meets `c`, moved outward by what the
/// executor's float8 arithmetic may round off (`D + 1e20 <= 1e20` holds for
/// every row: its sum rounds to 1e20; taken as `D <= 0` it ended the scan at
/// the first rows, hunt-163). Each of its few operations errs by a relative
/// epsilon of the largest magnitude in play; eight of them are allowed.
fn solve(c: f64, s: f64, o: f64) -> f64 {
    let d = (c - o) / s;
    if !d.is_finite() {
        return d;
    }
    d + 8.0 * f64::EPSILON * (c.abs() + o.abs() + (s * d).abs()) / s.abs()
}

/// `(s, o)` when `expr` is `o + s·key`, built from `key` by `float8`'s own
/// `+`, `-`, `*` and unary `-` with constants or bound parameters (`1 - key`,
/// `key * -1`); None for anything else, a NULL, or a factor of 0 or NaN.
///
/// # Safety
/// `expr` and `key` are expressions of `node`'s plan.
unsafe fn linear_in(
    node: *mut pg_sys::IndexScanState,
    expr: *mut pg_sys::Node,
    key: *mut pg_sys::Node,
) -> Option<(f64, f64)> {
    const NEG: u32 = 585; // - float8
    const POS: u32 = 1920; // + float8
    const ADD: u32 = 591; // float8 + float8
    const SUB: u32 = 592; // float8 - float8
    const MUL: u32 = 594; // float8 * float8

    // SAFETY: forwarded contract; each node's tag says which struct it is.
    unsafe {
        if pg_sys::equal(
            expr as *const std::ffi::c_void,
            key as *const std::ffi::c_void,
        ) {
            return Some((1.0, 0.0));
        }
        if (*expr).type_ != pg_sys::NodeTag::T_OpExpr {
            return None;
        }
        let op = expr as *mut pg_sys::OpExpr;
        let args = pgrx::PgList::<pg_sys::Node>::from_pg((*op).args);
        let opno = u32::from((*op).opno);
        if args.len() == 1 {
            let (s, o) = linear_in(node, args.get_ptr(0)?, key)?;
            return match opno {
                NEG => Some((-s, -o)),
                POS => Some((s, o)),
                _ => None,
            };
        }
        let (a, b) = (args.get_ptr(0)?, args.get_ptr(1)?);
        if !matches!(opno, ADD | SUB | MUL) {
            return None;
        }
        // One side linear in the key, the other a value.
        let (lin, k, key_left) = if let Some(l) = linear_in(node, a, key) {
            (l, bound_value(node, b)?, true)
        } else {
            (linear_in(node, b, key)?, bound_value(node, a)?, false)
        };
        let (s, o) = lin;
        let r = match (opno, key_left) {
            (ADD, _) => (s, o + k),
            (SUB, true) => (s, o - k),
            (SUB, false) => (-s, k - o),
            (MUL, _) => (s * k, o * k),
            _ => return None,
        };
        (r.0 != 0.0 && r.0.is_finite() && r.1.is_finite()).then_some(r)
    }
}

/// The value of `expr` when it is a constant or a bound parameter of the
/// statement (possibly relabelled) of type float8 or float4, as a float8;
/// None otherwise, or NULL.
///
/// # Safety
/// `expr` is an expression of `node`'s plan.
unsafe fn bound_value(node: *mut pg_sys::IndexScanState, expr: *mut pg_sys::Node) -> Option<f64> {
    // SAFETY: forwarded contract.
    unsafe { bound_of(node, expr).flatten() }
}

/// [`bound_value`], telling a NULL (`Some(None)`) from an expression that is
/// not a constant or bound parameter of those types (`None`).
///
/// # Safety
/// `expr` is an expression of `node`'s plan.
unsafe fn bound_of(
    node: *mut pg_sys::IndexScanState,
    expr: *mut pg_sys::Node,
) -> Option<Option<f64>> {
    // SAFETY: forwarded contract; see distance_ceiling.
    unsafe {
        let ty = pg_sys::exprType(expr);
        if !matches!(ty, pg_sys::FLOAT8OID | pg_sys::FLOAT4OID) || !certain(expr) {
            return None;
        }
        let ps = node as *mut pg_sys::PlanState;
        let econtext = (*ps).ps_ExprContext;
        if econtext.is_null() {
            return None;
        }
        let old = pg_sys::MemoryContextSwitchTo((*(*ps).state).es_query_cxt);
        let state = pg_sys::ExecInitExpr(expr as *mut pg_sys::Expr, ps);
        pg_sys::MemoryContextSwitchTo(old);
        let Some(d) = evaluate(state, econtext)? else {
            return Some(None);
        };
        Some(Some(if ty == pg_sys::FLOAT4OID {
            f64::from(f32::from_bits(d.value() as u32))
        } else {
            f64::from_bits(d.value() as u64)
        }))
    }
}

/// Whether an open index is one of ours: its access method begins scans with
/// our `ambeginscan` (the handler's routine, cached in the relation).
///
/// # Safety
/// `index` is an open index relation.
unsafe fn is_ivfpq(index: pg_sys::Relation) -> bool {
    type Begin = unsafe extern "C-unwind" fn(pg_sys::Relation, i32, i32) -> pg_sys::IndexScanDesc;
    // SAFETY: forwarded contract; rd_indam is the relation's cached routine.
    let begin = unsafe { (*index).rd_indam.as_ref().and_then(|am| am.ambeginscan) };
    begin.is_some_and(|f| std::ptr::fn_addr_eq(f, super::scan::ambeginscan as Begin))
}
