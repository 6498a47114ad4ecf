//! Every codec: round trips, every truncation rejected, another tag or version rejected,
//! and the values no record may hold.

use super::*;
use crate::detect::sequential::evidence::tests::obs;

/// Every strict prefix of `bytes` fails to decode.
fn truncations_fail<T: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, Corrupt>,
) {
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "cut {cut}");
    }
}

/// The same bytes under another version, or the previous build's untagged layout (its
/// version byte first, no tag), fail to decode.
fn other_formats_fail<T: std::fmt::Debug>(
    bytes: &[u8],
    old_version: u8,
    decode: impl Fn(&[u8]) -> Result<T, Corrupt>,
) {
    let mut newer = bytes.to_vec();
    newer[1] = newer[1].wrapping_add(1);
    assert_eq!(decode(&newer).map(|_| ()), Err(Corrupt), "another version");
    let mut tag = bytes.to_vec();
    tag[0] = b'X';
    assert_eq!(decode(&tag).map(|_| ()), Err(Corrupt), "another tag");
    let mut untagged = vec![old_version];
    untagged.extend_from_slice(&bytes[2..]);
    assert_eq!(decode(&untagged).map(|_| ()), Err(Corrupt), "untagged");
}

#[test]
fn board_round_trip_and_corruption() {
    let mut board = Board::new(4);
    board.0[1] = Breaker::default().trip(42, Trigger::ConsecutiveFailures, 7);
    board.0[2] = Breaker::default().raise_alert(7, Trigger::Latency).unwrap();
    board.0[3] = Breaker::default()
        .hold(9, Trigger::Operator, Trigger::Operator, 7)
        .unwrap()
        .0;
    board.0[3].checked_ns = 11;
    board.0[1].released_ns = 13;
    let bytes = encode_board(&board);
    assert_eq!(bytes.len(), 4 + 4 * BREAKER_BYTES);
    assert_eq!(decode_board(&bytes, 4), Ok(board.clone()));
    // A hold on a breaker that is not shedding is no board of this format.
    let mut loose = board.clone();
    loose.0[0].hold = Some(Trigger::Flag);
    assert_eq!(decode_board(&encode_board(&loose), 4), Err(Corrupt));
    let board = Board(board.0[..3].to_vec());
    let bytes = encode_board(&board);
    assert_eq!(decode_board(&bytes, 3), Ok(board.clone()));
    assert_eq!(decode_board(&bytes, 2), Err(Corrupt));
    truncations_fail(&bytes, |b| decode_board(b, 3));
    other_formats_fail(&bytes, 2, |b| decode_board(b, 3));
    // The previous version's board (35 bytes a breaker, no hold) is not misread.
    let mut v3 = bytes[..4].to_vec();
    v3[1] = 3;
    for b in &board.0 {
        v3.extend_from_slice(&encode_board(&Board(vec![*b]))[4..4 + 35]);
    }
    assert_eq!(decode_board(&v3, 3), Err(Corrupt));
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(decode_board(&extra, 3), Err(Corrupt));
    let mut bad = bytes;
    bad[4 + BREAKER_BYTES + 1] = 77;
    assert_eq!(decode_board(&bad, 3), Err(Corrupt));
}

#[test]
fn trigger_codes_round_trip() {
    for t in Trigger::ALL {
        assert_eq!(trigger_from_code(trigger_code(t)), Some(t));
    }
    assert_eq!(trigger_from_code(0), None);
    assert_eq!(trigger_from_code(99), None);
}

#[test]
fn record_round_trips_and_rejects_corruption() {
    use crate::detect::sequential::bet::Stake;
    use crate::detect::sequential::confseq::Sums;
    let mut r = Record::new(2, 3, 1);
    let mut g = Tally::default();
    g.observe(&obs(12.5, 3.0, false));
    g.observe(&obs(0.0, 0.0, true));
    let mut stake = Stake::default();
    stake.bet(0.5, -1.0, 1.5, 1.0);
    let u = r.unit_for(1, 4).unwrap();
    u.add(
        &g,
        &[stake, Stake::default(), stake],
        &Tally::default(),
        1_000.0,
    );
    u.promotion.caps = Caps {
        latency_ms: 300.0,
        boxes: 10.0,
    };
    u.promotion.gray[0] = Sums {
        n: 3.0,
        sum: 0.9,
        sumsq: 0.3,
        stakes: 1.5,
        staked: 0.45,
        penalty: 0.01,
    };
    u.promotion.verdict = Verdict::Proven;
    u.promotion.verdict_ms = 2_000.0;
    r.controls[0].absorb_decayed(&g, 1_000.0);
    let bytes = encode_record(&r);
    assert_eq!(decode_record(&bytes), Ok(r.clone()));
    truncations_fail(&bytes, decode_record);
    other_formats_fail(&bytes, 1, decode_record);
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(decode_record(&extra), Err(Corrupt));
    // A failure count above the responses is not a tally.
    let mut bad = r.clone();
    bad.units[0].epoch.gray.rate = Rate {
        n: 1.0,
        failures: 2.0,
    };
    assert_eq!(decode_record(&encode_record(&bad)), Err(Corrupt));
    // Nor is a fractional reply count, or an unknown verdict.
    let mut bad = r.clone();
    bad.units[1].detectors[0].scored = 1.5;
    assert_eq!(decode_record(&encode_record(&bad)), Err(Corrupt));
    let mut bytes = encode_record(&r);
    let verdict_at = bytes.len() - 11 * 8 - 4 * 8;
    bytes[verdict_at..verdict_at + 8].copy_from_slice(&7.0f64.to_le_bytes());
    assert_eq!(decode_record(&bytes), Err(Corrupt));
}

fn snapshot() -> Snapshot {
    let stats = Stats {
        responses: 3,
        failures: 1,
        lat_n: 2,
        lat_sum: 21.5,
        box_n: 2,
        box_sum: 9.0,
        box_sumsq: 41.0,
    };
    Snapshot {
        rings: vec![vec![(41, stats), (42, stats)], vec![], vec![(40, stats)]],
        streaks: vec![
            Streak {
                last_success_ns: 7,
                failures_ns: vec![8, 9],
            },
            Streak::default(),
        ],
    }
}

#[test]
fn snapshots_round_trip_and_reject_corruption() {
    let s = snapshot();
    let bytes = encode_snapshot(&s);
    assert_eq!(decode_snapshot(&bytes, 2), Ok(s.clone()));
    assert_eq!(decode_snapshot(&bytes, 1), Err(Corrupt));
    assert_eq!(decode_snapshot(&bytes, 3), Err(Corrupt));
    truncations_fail(&bytes, |b| decode_snapshot(b, 2));
    other_formats_fail(&bytes, 1, |b| decode_snapshot(b, 2));
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(decode_snapshot(&extra, 2), Err(Corrupt));
    // NaN smuggled into a sum: header, ring length, index, three counts, then `lat_sum`.
    let mut nan = bytes.clone();
    let at = 2 + 2 + 2 + 8 + 4 + 4 + 4;
    nan[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    assert_eq!(decode_snapshot(&nan, 2), Err(Corrupt));
}

#[test]
fn worker_lists_round_trip_and_reject_corruption() {
    let ids = [7, 0xdead_beef, 9];
    let bytes = encode_workers(&ids);
    assert_eq!(decode_workers(&bytes), Ok(ids.to_vec()));
    assert_eq!(decode_workers(&encode_workers(&[])), Ok(Vec::new()));
    truncations_fail(&bytes, decode_workers);
    let mut newer = bytes.clone();
    newer[1] += 1;
    assert_eq!(decode_workers(&newer), Err(Corrupt));
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0; 4]);
    assert_eq!(decode_workers(&extra), Err(Corrupt));
    // An earlier build's bare list of ids, even one that starts like a list of these.
    let bare: Vec<u8> = [u32::from_le_bytes([b'L', 1, 1, 0]), 0, 5]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    assert_eq!(decode_workers(&bare), Err(Corrupt));
}
