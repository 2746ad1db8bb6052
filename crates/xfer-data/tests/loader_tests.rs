//! Data sets, loaders, paired loaders and splits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use candle_core::Device;
use std::collections::HashSet;
use xfer_data::transform::{Compose, RandomAffine, RandomHorizontalFlip};
use xfer_data::{
    DataError, DataLoader, Dataset, PairedLoader, TensorDataset, class_split, few_shot,
    random_unseen_classes, stratified_split,
};

/// `n` samples of shape [1, 2, 2]; sample i has features all equal to i, label i % k.
fn toy(n: usize, k: u32) -> TensorDataset {
    let x: Vec<f32> = (0..n).flat_map(|i| [i as f32; 4]).collect();
    let y: Vec<u32> = (0..n as u32).map(|i| i % k).collect();
    TensorDataset::new("toy", x, vec![1, 2, 2], y).unwrap()
}

fn ids(b: &xfer_data::Batch) -> Vec<usize> {
    // Features encode the index: read it back from the tensor, not from `indices`.
    let v: Vec<f32> = b.x.flatten_all().unwrap().to_vec1().unwrap();
    v.chunks(4).map(|c| c[0] as usize).collect()
}

#[test]
fn tensor_dataset_checks_shapes_labels_and_indexes_without_panicking() {
    assert!(TensorDataset::new("a", vec![0.0; 7], vec![2], vec![0, 1, 2, 3]).is_err());
    assert!(TensorDataset::new("a", vec![0.0; 8], vec![], vec![0; 8]).is_err());
    let ds = toy(6, 3);
    assert_eq!(ds.num_classes(), 3);
    assert!(ds.clone().with_num_classes(2).is_err());
    let e = ds.get(6).unwrap_err();
    assert!(matches!(
        e,
        DataError::IndexOutOfRange {
            index: 6,
            len: 6,
            ..
        }
    ));
    assert!(ds.get(usize::MAX).is_err());
    assert!(ds.subset(&[0, 99]).is_err());
    let s = ds.get(4).unwrap();
    assert_eq!((s.x, s.y), (vec![4.0; 4], Some(1)));
    assert!(TensorDataset::new("big", vec![0.0], vec![1], vec![u32::MAX]).is_err());
    let (x, y) = ds.to_tensors(&Device::Cpu).unwrap();
    assert_eq!(x.dims(), &[6, 1, 2, 2]);
    assert_eq!(y.to_vec1::<u32>().unwrap(), vec![0, 1, 2, 0, 1, 2]);
    let flat = ds.clone().flatten();
    assert_eq!(flat.sample_shape(), &[4]);
    let both = TensorDataset::concat(&[&ds, &toy(2, 3)]).unwrap();
    assert_eq!(both.len(), 8);
    assert_eq!(both.domains().unwrap(), &[0, 0, 0, 0, 0, 0, 1, 1]);
    assert!(TensorDataset::concat(&[&ds, &flat]).is_err());
}

#[test]
fn unlabeled_dataset_has_no_labels_in_samples_or_batches() {
    let u = toy(10, 2).unlabeled();
    assert!(!u.has_labels());
    assert_eq!(u.get(3).unwrap().y, None);
    let loader = DataLoader::builder(u, 4).build().unwrap();
    for b in loader.epoch(0) {
        let b = b.unwrap();
        assert!(b.y.is_none());
        assert!(b.labels().is_err());
    }
}

#[test]
fn epoch_is_a_seeded_permutation_covering_every_sample_once() {
    let loader = DataLoader::builder(toy(10, 2), 3).seed(7).build().unwrap();
    assert_eq!(loader.batches_per_epoch(), 4);
    let batches: Vec<_> = loader.epoch(0).map(|b| b.unwrap()).collect();
    assert_eq!(
        batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    let seen: Vec<usize> = batches.iter().flat_map(ids).collect();
    let set: HashSet<usize> = seen.iter().copied().collect();
    assert_eq!(set.len(), 10);
    assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
    // Same seed → same order; another epoch → another order; another seed → another order.
    let again: Vec<usize> = loader.epoch(0).flat_map(|b| ids(&b.unwrap())).collect();
    assert_eq!(seen, again);
    let e1: Vec<usize> = loader.epoch(1).flat_map(|b| ids(&b.unwrap())).collect();
    assert_ne!(seen, e1);
    let other = DataLoader::builder(toy(10, 2), 3).seed(8).build().unwrap();
    assert_ne!(other.order(0), loader.order(0));
    // Labels travel with their samples.
    for b in loader.epoch(0) {
        let b = b.unwrap();
        let y: Vec<u32> = b.y.as_ref().unwrap().to_vec1().unwrap();
        let i = ids(&b);
        assert!(i.iter().zip(&y).all(|(&i, &y)| i as u32 % 2 == y));
    }
}

#[test]
fn drop_last_and_no_shuffle_and_bad_configurations() {
    let l = DataLoader::builder(toy(10, 2), 3)
        .shuffle(false)
        .drop_last(true)
        .build()
        .unwrap();
    let b: Vec<Vec<usize>> = l.epoch(0).map(|b| ids(&b.unwrap())).collect();
    assert_eq!(b, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8]]);
    assert!(DataLoader::builder(toy(10, 2), 0).build().is_err());
    assert!(
        DataLoader::builder(toy(2, 2), 3)
            .drop_last(true)
            .build()
            .is_err()
    );
    let empty = toy(4, 2).subset(&[]).unwrap();
    assert!(matches!(
        DataLoader::builder(empty, 2).build().unwrap_err(),
        DataError::Empty(_)
    ));
}

#[test]
fn forever_cycles_through_epochs_and_resuming_at_a_step_gives_the_same_batches() {
    let l = DataLoader::builder(toy(7, 2), 2).seed(3).build().unwrap();
    let bpe = l.batches_per_epoch() as u64; // 4
    let run: Vec<(u64, Vec<usize>)> = l
        .forever()
        .take(10)
        .map(|b| {
            let b = b.unwrap();
            (b.epoch, ids(&b))
        })
        .collect();
    assert_eq!(run[0].0, 0);
    assert_eq!(run[4].0, 1);
    assert_eq!(run[8].0, 2);
    let epoch1: Vec<Vec<usize>> = l.epoch(1).map(|b| ids(&b.unwrap())).collect();
    assert_eq!(
        run[4..8].iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        epoch1
    );
    // Resume at global step 5 (epoch 1, batch 1).
    let resumed: Vec<Vec<usize>> = l.steps(5, Some(5)).map(|b| ids(&b.unwrap())).collect();
    assert_eq!(
        resumed,
        run[5..10].iter().map(|r| r.1.clone()).collect::<Vec<_>>()
    );
    assert_eq!(bpe, 4);
}

#[test]
fn prefetch_thread_yields_exactly_the_inline_batches_and_stops_when_dropped() {
    let t = Compose::new()
        .then(RandomHorizontalFlip { p: 0.5 })
        .then(RandomAffine {
            degrees: 10.0,
            translate: 0.1,
            scale: (0.9, 1.1),
        });
    let inline = DataLoader::builder(toy(50, 5), 8)
        .seed(11)
        .transform(t.clone())
        .build()
        .unwrap();
    let pre = DataLoader::builder(toy(50, 5), 8)
        .seed(11)
        .transform(t)
        .prefetch(3)
        .build()
        .unwrap();
    for e in 0..2 {
        let a: Vec<Vec<f32>> = inline
            .epoch(e)
            .map(|b| b.unwrap().x.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let b: Vec<Vec<f32>> = pre
            .epoch(e)
            .map(|b| b.unwrap().x.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        assert_eq!(a, b, "epoch {e}");
    }
    // An endless prefetching iterator dropped after a few batches must not hang.
    let mut it = pre.forever();
    for _ in 0..3 {
        it.next().unwrap().unwrap();
    }
    drop(it);
}

#[test]
fn random_transforms_are_seeded_per_epoch_and_sample() {
    let t = RandomAffine {
        degrees: 30.0,
        translate: 0.2,
        scale: (0.8, 1.2),
    };
    let x: Vec<f32> = (0..4 * 64).map(|v| (v % 13) as f32).collect();
    let ds = TensorDataset::new("img", x, vec![1, 8, 8], vec![0, 1, 0, 1]).unwrap();
    let l = DataLoader::builder(ds, 4)
        .shuffle(false)
        .seed(1)
        .transform(t)
        .build()
        .unwrap();
    let get = |e| -> Vec<f32> {
        l.epoch(e)
            .next()
            .unwrap()
            .unwrap()
            .x
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    assert_eq!(get(0), get(0));
    assert_ne!(get(0), get(1));
}

#[test]
fn transform_that_rejects_the_sample_shape_fails_at_build() {
    let t = xfer_data::transform::CenterCrop {
        height: 3,
        width: 3,
    };
    assert!(
        DataLoader::builder(toy(4, 2), 2)
            .transform(t)
            .build()
            .is_err()
    );
    let flat = toy(4, 2).flatten();
    assert!(
        DataLoader::builder(flat, 2)
            .transform(RandomHorizontalFlip { p: 0.5 })
            .build()
            .is_err()
    );
}

#[test]
fn paired_loader_gives_equal_batches_and_cycles_the_shorter_side() {
    let src = toy(20, 2);
    let tgt = toy(7, 2).unlabeled();
    let p = PairedLoader::from_datasets(src, tgt, 3, 5, &Device::Cpu).unwrap();
    assert_eq!(p.steps_per_epoch(), 6); // 20 / 3 with drop_last; target has 2 per epoch
    let pairs: Vec<_> = p.epoch(0).map(|r| r.unwrap()).collect();
    assert_eq!(pairs.len(), 6);
    for (s, t) in &pairs {
        assert_eq!(s.x.dims(), t.x.dims());
        assert!(s.y.is_some() && t.y.is_none());
    }
    // The source side is exactly its epoch 0.
    let src_epoch: Vec<Vec<usize>> = p.source().epoch(0).map(|b| ids(&b.unwrap())).collect();
    assert_eq!(
        pairs.iter().map(|(s, _)| ids(s)).collect::<Vec<_>>(),
        src_epoch
    );
    // The target side cycles: 6 steps = 3 of its epochs, each reshuffled.
    let tgt_epochs: Vec<u64> = pairs.iter().map(|(_, t)| t.epoch).collect();
    assert_eq!(tgt_epochs, vec![0, 0, 1, 1, 2, 2]);
    // Epoch 1 continues where epoch 0 left off on the target side.
    let next: Vec<u64> = p.epoch(1).map(|r| r.unwrap().1.epoch).collect();
    assert_eq!(next, vec![3, 3, 4, 4, 5, 5]);
}

#[test]
fn paired_loader_refuses_unequal_batch_sizes_or_partial_batches() {
    let a = DataLoader::builder(toy(10, 2), 4)
        .drop_last(true)
        .build()
        .unwrap();
    let b = DataLoader::builder(toy(10, 2), 5)
        .drop_last(true)
        .build()
        .unwrap();
    assert!(PairedLoader::new(a.clone(), b).is_err());
    let c = DataLoader::builder(toy(10, 2), 4).build().unwrap();
    assert!(PairedLoader::new(a, c).is_err());
}

#[test]
fn stratified_split_keeps_class_proportions_and_is_seeded() {
    let ds = toy(100, 4); // 25 per class
    let (train, val) = stratified_split(&ds, 0.2, 1).unwrap();
    assert_eq!(val.class_counts(), vec![5, 5, 5, 5]);
    assert_eq!(train.class_counts(), vec![20, 20, 20, 20]);
    let (_, val2) = stratified_split(&ds, 0.2, 1).unwrap();
    assert_eq!(val.features(), val2.features());
    let (_, val3) = stratified_split(&ds, 0.2, 2).unwrap();
    assert_ne!(val.features(), val3.features());
    // Disjoint and complete.
    let mut all: Vec<f32> = train
        .features()
        .iter()
        .chain(val.features())
        .step_by(4)
        .copied()
        .collect();
    all.sort_by(f32::total_cmp);
    assert_eq!(all, (0..100).map(|v| v as f32).collect::<Vec<_>>());
    assert!(stratified_split(&ds, 1.0, 0).is_err());
    assert!(stratified_split(&ds, 0.0, 0).is_err());
}

#[test]
fn few_shot_takes_k_per_class_and_all_of_a_smaller_class() {
    let ds = toy(30, 3);
    let (support, query) = few_shot(&ds, 4, 9).unwrap();
    assert_eq!(support.class_counts(), vec![4, 4, 4]);
    assert_eq!(query.len(), 18);
    let (s2, _) = few_shot(&ds, 4, 9).unwrap();
    assert_eq!(support.features(), s2.features());
    let (s3, _) = few_shot(&ds, 4, 10).unwrap();
    assert_ne!(support.features(), s3.features());
    // Every class has 10 < 11 examples: all of them train, nothing is left to test.
    let (all, rest) = few_shot(&ds, 11, 0).unwrap();
    assert_eq!(all.class_counts(), vec![10, 10, 10]);
    assert!(rest.is_empty());
    assert!(matches!(
        few_shot(&ds, 0, 0).unwrap_err(),
        DataError::InvalidArgument { .. }
    ));
}

#[test]
fn class_split_separates_unseen_classes_and_keeps_their_ids() {
    let ds = toy(12, 4);
    let (seen, unseen) = class_split(&ds, &[1, 3]).unwrap();
    assert!(seen.labels().iter().all(|&l| l == 0 || l == 2));
    assert!(unseen.labels().iter().all(|&l| l == 1 || l == 3));
    assert_eq!(seen.len() + unseen.len(), 12);
    assert_eq!(unseen.num_classes(), 4);
    assert!(class_split(&ds, &[4]).is_err());
    let u = random_unseen_classes(24, 6, 0).unwrap();
    assert_eq!(u.len(), 6);
    assert_eq!(u, random_unseen_classes(24, 6, 0).unwrap());
    assert!(u.windows(2).all(|w| w[0] < w[1]));
    assert!(random_unseen_classes(5, 5, 0).is_err());
}
