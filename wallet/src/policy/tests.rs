use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

#[test]
fn equal_shares_differ_by_at_most_one_fen_and_sum_exactly() {
    let shares = split(
        1_001,
        10,
        PacketMode::Equal,
        20_000,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(shares.iter().sum::<Fen>(), 1_001);
    assert_eq!(shares.iter().max(), Some(&101));
    assert_eq!(shares.iter().min(), Some(&100));
}

#[test]
fn lucky_shares_are_at_least_one_fen_and_sum_exactly() {
    let mut rng = StdRng::seed_from_u64(7);
    let shares = split(100, 100, PacketMode::Lucky, 20_000, &mut rng);
    assert_eq!(shares, vec![1; 100]);
    let shares = split(20_000, 7, PacketMode::Lucky, 20_000, &mut rng);
    assert_eq!(shares.iter().sum::<Fen>(), 20_000);
    assert!(shares.iter().all(|&s| s >= 1));
}

mod split_properties {
    use std::sync::atomic::{AtomicU64, Ordering};

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::config::WalletConfig;
    use crate::model::GroupId;

    const GROUP: Place = Place::Group(GroupId(1));

    fn mode() -> impl Strategy<Value = PacketMode> {
        prop_oneof![Just(PacketMode::Lucky), Just(PacketMode::Equal)]
    }

    /// Checks one split of inputs that passed [`check_packet`].
    fn check_split(
        amount: Fen,
        count: u32,
        mode: PacketMode,
        per_share: Fen,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let shares = split(
            amount,
            count,
            mode,
            per_share,
            &mut StdRng::seed_from_u64(seed),
        );
        prop_assert_eq!(shares.len(), count as usize);
        prop_assert_eq!(shares.iter().sum::<Fen>(), amount);
        prop_assert!(
            shares.iter().all(|&s| s >= 1 && s <= per_share),
            "{:?}",
            shares
        );
        match mode {
            PacketMode::Equal => {
                let (min, max) = (shares.iter().min(), shares.iter().max());
                prop_assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
            }
            _ => {
                // Each share but the last is at most twice the mean of what
                // was left when it was drawn (share * left <= 2 * rest); the
                // last takes the rest.
                let mut rest = amount;
                for (i, &share) in shares.iter().enumerate() {
                    let left = Fen::from(count) - i as Fen;
                    if left == 1 {
                        prop_assert_eq!(share, rest);
                    } else {
                        prop_assert!(
                            i128::from(share) * i128::from(left) <= 2 * i128::from(rest),
                            "share {} of {} drawn with {} left over {} shares",
                            i,
                            share,
                            rest,
                            left
                        );
                    }
                    rest -= share;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn every_valid_packet_under_the_default_limits_splits_exactly_and_fairly() {
        let limits = WalletConfig::default().packet_limits();
        let inputs = (
            1..=limits.per_packet,
            1..=limits.max_count,
            mode(),
            any::<u64>(),
        )
            .prop_filter("check_packet passes", move |&(amount, count, mode, _)| {
                check_packet(amount, count, mode, GROUP, count, &limits).is_ok()
            });
        let checked = AtomicU64::new(0);
        TestRunner::new(Config::with_cases(4_000))
            .run(&inputs, |(amount, count, mode, seed)| {
                checked.fetch_add(1, Ordering::Relaxed);
                check_split(amount, count, mode, limits.per_share, seed)
            })
            .unwrap();
        println!(
            "split under the default limits: {} packets checked",
            checked.into_inner()
        );
    }

    #[test]
    fn every_valid_packet_splits_within_a_tight_share_limit() {
        // Counts up to the largest configurable, amounts up to what they
        // take, and a share limit from the mean rounded up to twice it, so
        // that the limit narrows the draws.
        let inputs = (
            1..=6_000u32,
            1..=1_000_000i64,
            0..=100i64,
            mode(),
            any::<u64>(),
        )
            .prop_map(|(count, per, slack, mode, seed)| {
                let amount = Fen::from(count) * per - per / 2;
                let mean_up = (amount + Fen::from(count) - 1) / Fen::from(count);
                (amount, count, mode, mean_up + mean_up * slack / 100, seed)
            })
            .prop_filter(
                "check_packet passes",
                |&(amount, count, mode, per_share, _)| {
                    let limits = PacketLimits {
                        per_packet: amount,
                        per_share,
                        max_count: 6_000,
                    };
                    check_packet(amount, count, mode, GROUP, count, &limits).is_ok()
                },
            );
        let checked = AtomicU64::new(0);
        TestRunner::new(Config::with_cases(1_000))
            .run(&inputs, |(amount, count, mode, per_share, seed)| {
                checked.fetch_add(1, Ordering::Relaxed);
                check_split(amount, count, mode, per_share, seed)
            })
            .unwrap();
        println!(
            "split within tight share limits: {} packets checked",
            checked.into_inner()
        );
    }
}
