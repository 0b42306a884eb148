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
