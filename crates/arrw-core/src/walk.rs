//! What a `batch_update` job remembers of its own batches while it walks a
//! table's heap in block ranges: the transactions whose new row versions may
//! lie in blocks the walk has yet to read (so that it does not update those
//! rows again), each with the last block its versions may be in. An entry is
//! dropped once the walk passes that block. The glue (src/jobs/kinds.rs) keeps
//! it in the job's resume point as two comma-separated lists.

/// The batches remembered: (transaction id, last block of its versions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remembered(Vec<(u32, i64)>);

impl Remembered {
    /// From a resume point's `xids` and `until` lists. Lists of different
    /// lengths (a resume point written before `until` existed, or damaged)
    /// keep every xid to the walk's `end`; unparsable items are skipped.
    pub fn from_lists(xids: &str, until: &str, end: i64) -> Self {
        let xids: Vec<u32> = xids
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        let until: Vec<i64> = until
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        if until.len() == xids.len() {
            Remembered(xids.into_iter().zip(until).collect())
        } else {
            Remembered(xids.into_iter().map(|x| (x, end - 1)).collect())
        }
    }

    /// The resume point's two lists.
    pub fn to_lists(&self) -> (String, String) {
        let xids: Vec<String> = self.0.iter().map(|(x, _)| x.to_string()).collect();
        let until: Vec<String> = self.0.iter().map(|(_, b)| b.to_string()).collect();
        (xids.join(","), until.join(","))
    }

    /// The walk has read every block below `next`: entries whose versions
    /// all lie there are dropped.
    pub fn passed(&mut self, next: i64) {
        self.0.retain(|&(_, last)| last >= next);
    }

    /// Remembers `xid`, whose versions may lie up to block `last`.
    pub fn push(&mut self, xid: u32, last: i64) {
        self.0.push((xid, last));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The xids, comma-separated (the body of an `xid[]` literal).
    pub fn xid_list(&self) -> String {
        let xids: Vec<String> = self.0.iter().map(|(x, _)| x.to_string()).collect();
        xids.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn old_resume_points_keep_every_xid_to_the_end() {
        let r = Remembered::from_lists("5,9", "", 100);
        assert_eq!(r, Remembered(vec![(5, 99), (9, 99)]));
        let mut r2 = r.clone();
        r2.passed(99);
        assert_eq!(r2, r);
        r2.passed(100);
        assert!(r2.is_empty());
    }

    #[test]
    fn empty_lists_are_nothing_remembered() {
        let r = Remembered::from_lists("", "", 10);
        assert!(r.is_empty());
        assert_eq!(r.to_lists(), (String::new(), String::new()));
    }

    #[test]
    fn an_entry_goes_once_the_walk_passes_its_last_block() {
        let mut r = Remembered::default();
        r.push(7, 12);
        r.push(8, 30);
        r.passed(12);
        assert_eq!(r.xid_list(), "7,8");
        r.passed(13);
        assert_eq!(r.xid_list(), "8");
    }

    proptest! {
        #[test]
        fn lists_round_trip(entries in proptest::collection::vec((any::<u32>(), 0i64..1_000_000), 0..50)) {
            let mut r = Remembered::default();
            for &(x, b) in &entries {
                r.push(x, b);
            }
            let (xids, until) = r.to_lists();
            prop_assert_eq!(Remembered::from_lists(&xids, &until, 1_000_000), r);
        }

        #[test]
        fn passing_keeps_exactly_the_entries_ahead(
            entries in proptest::collection::vec((any::<u32>(), 0i64..1000), 0..50),
            next in 0i64..1000,
        ) {
            let mut r = Remembered::default();
            for &(x, b) in &entries {
                r.push(x, b);
            }
            r.passed(next);
            let want: Vec<(u32, i64)> = entries.into_iter().filter(|&(_, b)| b >= next).collect();
            prop_assert_eq!(r.0, want);
        }
    }
}
