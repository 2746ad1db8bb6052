//! The embedded data sets: sizes, ranges, seeding, and that they are what they claim to be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use xfer_data::TensorDataset;
use xfer_data::embedded::shifted;
use xfer_data::embedded::{digit_attributes, moons, moons_pair, optdigits, shapes, synth_digits};

/// Nearest-centroid classifier: fit class means on `train`, accuracy on `test`.
fn nearest_centroid_accuracy(train: &TensorDataset, test: &TensorDataset) -> f64 {
    let d = train.feature_dim();
    let k = train.num_classes();
    let mut cent = vec![0f64; k * d];
    let mut cnt = vec![0usize; k];
    for (i, &l) in train.labels().iter().enumerate() {
        let x = train.features_of(i).unwrap();
        for j in 0..d {
            cent[l as usize * d + j] += f64::from(x[j]);
        }
        cnt[l as usize] += 1;
    }
    for c in 0..k {
        for j in 0..d {
            cent[c * d + j] /= cnt[c].max(1) as f64;
        }
    }
    let mut correct = 0;
    for (i, &l) in test.labels().iter().enumerate() {
        let x = test.features_of(i).unwrap();
        let best = (0..k)
            .map(|c| {
                let dist: f64 = (0..d)
                    .map(|j| (f64::from(x[j]) - cent[c * d + j]).powi(2))
                    .sum();
                (dist, c)
            })
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
            .1;
        if best == l as usize {
            correct += 1;
        }
    }
    correct as f64 / test.len() as f64
}

#[test]
fn optdigits_has_1797_digits_of_8x8_in_0_to_16_with_balanced_classes() {
    let ds = optdigits().unwrap();
    assert_eq!(ds.len(), 1797);
    assert_eq!(ds.sample_shape(), &[1, 8, 8]);
    assert_eq!(ds.num_classes(), 10);
    assert_eq!(ds.feature_range(), Some((0.0, 16.0)));
    let counts = ds.class_counts();
    assert_eq!(counts.iter().sum::<usize>(), 1797);
    assert!(
        counts.iter().all(|&c| (170..=185).contains(&c)),
        "{counts:?}"
    );
    assert_eq!(ds.attributes().unwrap().num_attributes(), 8);
    // First row of the file: a zero.
    assert_eq!(ds.labels()[0], 0);
    assert_eq!(
        &ds.features_of(0).unwrap()[..8],
        &[0., 0., 5., 13., 9., 1., 0., 0.]
    );
}

#[test]
fn synth_digits_transfer_to_optdigits_above_chance_but_far_from_perfect() {
    let synth = synth_digits(100, 0).unwrap();
    let real = optdigits().unwrap();
    assert_eq!(synth.sample_shape(), real.sample_shape());
    let (lo, hi) = synth.feature_range().unwrap();
    assert!(lo == 0.0 && hi == 16.0, "synth range {lo}..{hi}");
    let synth_to_real = nearest_centroid_accuracy(&synth, &real);
    let real_to_real = nearest_centroid_accuracy(&real, &real);
    println!(
        "nearest centroid: synth-digits -> optdigits {:.3}, optdigits -> optdigits {:.3}",
        synth_to_real, real_to_real
    );
    assert!(
        synth_to_real > 0.35,
        "synthetic digits do not look like digits: {synth_to_real}"
    );
    assert!(synth_to_real < 0.9, "no domain gap left: {synth_to_real}");
    assert!(real_to_real > synth_to_real);
}

#[test]
fn synth_digits_ink_is_comparable_to_optdigits() {
    let synth = synth_digits(30, 1).unwrap();
    let real = optdigits().unwrap();
    let mean_ink = |ds: &TensorDataset| {
        ds.features().iter().map(|&v| f64::from(v)).sum::<f64>() / ds.len() as f64
    };
    let (s, r) = (mean_ink(&synth), mean_ink(&real));
    println!("mean ink per digit: synth {s:.0}, optdigits {r:.0}");
    assert!(s > 0.5 * r && s < 1.6 * r, "synth {s} vs real {r}");
}

#[test]
fn synth_digits_repeat_with_a_seed_and_change_with_another() {
    let a = synth_digits(3, 5).unwrap();
    let b = synth_digits(3, 5).unwrap();
    let c = synth_digits(3, 6).unwrap();
    assert_eq!(a.features(), b.features());
    assert_ne!(a.features(), c.features());
    assert_eq!(a.len(), 30);
    assert!(synth_digits(0, 0).is_err());
}

#[test]
fn moons_pair_is_the_dann_toy_with_target_rotated() {
    let (s, t) = moons_pair(35.0, 0).unwrap();
    assert_eq!((s.len(), t.len()), (150, 150));
    assert_eq!(s.class_counts(), vec![75, 75]);
    assert_eq!(s.domains().unwrap()[0], 0);
    assert_eq!(t.domains().unwrap()[0], 1);
    // The mean angle of class 0 about the centre (0.5, 0.25) turns by about 35°.
    let mean_angle = |ds: &TensorDataset| {
        let (mut sx, mut sy) = (0.0f64, 0.0f64);
        for (i, &l) in ds.labels().iter().enumerate() {
            if l == 0 {
                let x = ds.features_of(i).unwrap();
                sx += f64::from(x[0]) - 0.5;
                sy += f64::from(x[1]) - 0.25;
            }
        }
        sy.atan2(sx).to_degrees()
    };
    let turn = mean_angle(&t) - mean_angle(&s);
    assert!((turn - 35.0).abs() < 3.0, "rotation {turn}");
    // Noise 0.05: points of the unrotated upper moon lie within ~4σ of the unit circle.
    for (i, &l) in s.labels().iter().enumerate() {
        if l == 0 {
            let x = s.features_of(i).unwrap();
            let r = (f64::from(x[0]).powi(2) + f64::from(x[1]).powi(2)).sqrt();
            assert!((r - 1.0).abs() < 0.25, "radius {r}");
        }
    }
    assert!(moons(1, 0.05, 0.0, 0).is_err());
}

#[test]
fn shapes_have_24_classes_one_hot_attributes_and_distinct_rows() {
    let ds = shapes(3, 0).unwrap();
    assert_eq!(ds.len(), 72);
    assert_eq!(ds.sample_shape(), &[3, 16, 16]);
    assert_eq!(ds.num_classes(), 24);
    let (lo, hi) = ds.feature_range().unwrap();
    assert!(lo >= 0.0 && hi <= 1.0);
    let att = ds.attributes().unwrap();
    assert_eq!((att.num_classes(), att.num_attributes()), (24, 9));
    for c in 0..24 {
        let row = att.row(c).unwrap();
        assert_eq!(row.iter().sum::<f32>(), 3.0, "one-hot per factor");
        for c2 in 0..c {
            assert_ne!(row, att.row(c2).unwrap());
        }
    }
    assert_eq!(ds.class_names()[0], "red solid circle");
    // The colour is visible: red shapes have more red than blue on average, blue the opposite.
    let chan_mean = |class: u32, ch: usize| {
        let mut s = 0.0;
        let mut n = 0;
        for (i, &l) in ds.labels().iter().enumerate() {
            if l == class {
                s += ds.features_of(i).unwrap()[ch * 256..(ch + 1) * 256]
                    .iter()
                    .sum::<f32>();
                n += 1;
            }
        }
        s / n as f32
    };
    assert!(chan_mean(0, 0) > chan_mean(0, 2) + 10.0); // red
    assert!(chan_mean(4, 2) > chan_mean(4, 0) + 10.0); // blue
}

#[test]
fn digit_attributes_rows_are_distinct_and_match_seven_segments() {
    let a = digit_attributes();
    assert_eq!((a.num_classes(), a.num_attributes()), (10, 8));
    for i in 0..10 {
        for j in 0..i {
            assert_ne!(a.row(i), a.row(j), "digits {i} and {j}");
        }
    }
    // 8 lights every segment and has two loops; 1 lights b and c.
    assert_eq!(a.row(8).unwrap(), &[1., 1., 1., 1., 1., 1., 1., 2.]);
    assert_eq!(a.row(1).unwrap(), &[0., 1., 1., 0., 0., 0., 0., 0.]);
}

#[test]
fn shifted_digits_keep_labels_and_range_and_really_shift() {
    let ds = optdigits()
        .unwrap()
        .subset(&(0..50).collect::<Vec<_>>())
        .unwrap();
    let inv = shifted::invert(&ds).unwrap();
    assert_eq!(inv.labels(), ds.labels());
    assert_eq!(inv.features()[0], 16.0 - ds.features()[0]);
    let rot = shifted::rotate(&ds, 90.0).unwrap();
    assert_eq!(rot.sample_shape(), &[1, 8, 8]);
    // Rotating by 90° four times is (nearly) the identity on the interior; by 90° once it is not.
    assert_ne!(rot.features(), ds.features());
    let back = shifted::rotate(
        &shifted::rotate(&shifted::rotate(&rot, 90.0).unwrap(), 90.0).unwrap(),
        90.0,
    )
    .unwrap();
    let err: f32 = back
        .features()
        .iter()
        .zip(ds.features())
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / ds.features().len() as f32;
    assert!(err < 0.5, "mean abs error after 4 quarter turns: {err}");
    let noisy = shifted::add_noise(&ds, 0.2, 0).unwrap();
    let (lo, hi) = noisy.feature_range().unwrap();
    assert!(lo >= 0.0 && hi <= 16.0);
    assert_eq!(
        shifted::add_noise(&ds, 0.2, 0).unwrap().features(),
        noisy.features()
    );
    let m = shifted::color_background(&ds, 0).unwrap();
    assert_eq!(m.sample_shape(), &[3, 8, 8]);
    assert_eq!(m.labels(), ds.labels());
    let (lo, hi) = m.feature_range().unwrap();
    assert!(lo >= 0.0 && hi <= 16.0);
    // Colour: the three channels differ.
    let x = m.features_of(0).unwrap();
    assert_ne!(&x[0..64], &x[64..128]);
    assert!(
        shifted::color_background(&m, 0).is_err(),
        "needs one channel"
    );
}
