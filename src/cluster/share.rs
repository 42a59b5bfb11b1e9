//! Who should run how many cameras: pure functions, unit-tested, shared by every instance.
//!
//! Every instance computes the same [`fair_targets`] from the same list of live instances, so
//! the targets add up to the number of active cameras (or to the cluster's capacity) and no two
//! instances disagree for longer than one heartbeat. [`preference`] orders the free cameras an
//! instance tries to take (rendezvous hashing), so instances that acquire at the same moment
//! mostly try different cameras, and a camera's preferred instance does not change when others
//! come and go.

use std::collections::BTreeMap;

/// How many cameras each live instance should hold: `total` spread as evenly as the instances'
/// capacities (`MAX_CAMERAS` each) allow, water-filling; the remainder goes to the instances
/// first in id order. The sum is `min(total, sum of capacities)`.
pub fn fair_targets(instances: &BTreeMap<String, usize>, total: usize) -> BTreeMap<String, usize> {
    let mut targets: BTreeMap<String, usize> = instances.keys().map(|id| (id.clone(), 0)).collect();
    let mut remaining = total;
    loop {
        let open: Vec<&String> = instances.iter().filter(|(id, cap)| targets[*id] < **cap).map(|(id, _)| id).collect();
        if open.is_empty() || remaining == 0 {
            break;
        }
        let per = remaining / open.len();
        if per == 0 {
            for id in open.into_iter().take(remaining) {
                *targets.get_mut(id).expect("invariant: id from instances") += 1;
            }
            break;
        }
        for id in open {
            let t = targets.get_mut(id).expect("invariant: id from instances");
            let add = per.min(instances[id] - *t);
            *t += add;
            remaining -= add;
        }
    }
    targets
}

/// The rendezvous weight of `camera` for `instance` (FNV-1a 64 of both, mixed): the higher, the
/// sooner the instance tries to take that camera.
pub fn preference(instance: &str, camera: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance.bytes().chain([0xff]).chain(camera.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser: FNV alone clusters on ids that differ in one trailing digit
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
        list.iter().map(|(id, c)| (id.to_string(), *c)).collect()
    }

    #[test]
    fn nine_on_three_is_three_each() {
        let t = fair_targets(&caps(&[("a", 64), ("b", 64), ("c", 64)]), 9);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
    }

    #[test]
    fn the_remainder_goes_to_the_first_ids() {
        let t = fair_targets(&caps(&[("a", 64), ("b", 64), ("c", 64)]), 10);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![4, 3, 3]);
    }

    #[test]
    fn capacities_cap_and_the_rest_flows_to_others() {
        let t = fair_targets(&caps(&[("a", 1), ("b", 64), ("c", 2)]), 12);
        assert_eq!((t["a"], t["b"], t["c"]), (1, 9, 2));
        let t = fair_targets(&caps(&[("a", 1), ("b", 2)]), 12);
        assert_eq!((t["a"], t["b"]), (1, 2), "never above capacity");
        assert!(fair_targets(&BTreeMap::new(), 5).is_empty());
    }

    #[test]
    fn targets_always_add_up() {
        for n in 1..12usize {
            for total in 0..200usize {
                let inst: BTreeMap<String, usize> = (0..n).map(|i| (format!("i{i:02}"), 5 + i * 7)).collect();
                let t = fair_targets(&inst, total);
                let cap: usize = inst.values().sum();
                assert_eq!(t.values().sum::<usize>(), total.min(cap), "n={n} total={total}");
                let (lo, hi) = (t.values().min().unwrap(), t.values().max().unwrap());
                if total <= 5 * n {
                    assert!(hi - lo <= 1, "even when no capacity binds: {t:?}");
                }
            }
        }
    }

    #[test]
    fn preference_spreads_cameras() {
        let mut wins = BTreeMap::<&str, usize>::new();
        for c in 0..3000 {
            let cam = format!("cam-{c}");
            let best = ["a", "b", "c"].into_iter().max_by_key(|i| preference(i, &cam)).unwrap();
            *wins.entry(best).or_default() += 1;
        }
        for (_, n) in wins {
            assert!((850..1150).contains(&n), "about a third each");
        }
    }
}
