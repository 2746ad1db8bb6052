//! Models: output shapes, PyTorch-style names, seeding, freezing, heads, multitask routing,
//! progressive columns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor, Var};
use xfer_models::{
    Activation, Backbone, ClassifierHead, ClassifierHeadConfig, ColumnConfig, DannLeNet, DigitsCnn,
    DigitsCnnConfig, DomainDiscriminator, DomainDiscriminatorConfig, LeNetConfig, Mlp, MlpConfig,
    ModelError, ModuleT, MultiHeadNet, MultiHeadNetConfig, ParamStore, ProgressiveNet, Selection,
    TaskConfig, ZeroShotConfig, ZeroShotHeads,
};
use xfer_ops::SeededRng;

const CPU: Device = Device::Cpu;

fn input(shape: &[usize], seed: u64) -> Tensor {
    SeededRng::new(seed)
        .normal(shape, 0.0, 1.0, DType::F32, &CPU)
        .unwrap()
}

fn shapes(store: &ParamStore) -> Vec<(String, Vec<usize>)> {
    store
        .all()
        .iter()
        .map(|p| (p.name().to_string(), p.var().dims().to_vec()))
        .collect()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn mlp_has_pytorch_names_and_output_shapes() {
    let store = ParamStore::new();
    let cfg = MlpConfig::new(4, &[8, 6], 3);
    let m = Mlp::new(
        &store.scope(""),
        &cfg,
        &mut SeededRng::new(0),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert_eq!(
        shapes(&store),
        [
            ("classifier.bias".to_string(), vec![3]),
            ("classifier.weight".to_string(), vec![3, 6]),
            ("features.0.bias".to_string(), vec![8]),
            ("features.0.weight".to_string(), vec![8, 4]),
            ("features.2.bias".to_string(), vec![6]),
            ("features.2.weight".to_string(), vec![6, 8]),
        ]
    );
    let x = input(&[5, 4], 1);
    assert_eq!(m.features_t(&x, false).unwrap().dims(), [5, 6]);
    assert_eq!(m.feature_dim(), 6);
    assert_eq!(m.forward_t(&x, true).unwrap().dims(), [5, 3]);
    // Dropout takes a position, as in nn.Sequential(Linear, ReLU, Dropout, Linear, ...).
    let store = ParamStore::new();
    let cfg = MlpConfig {
        dropout: 0.5,
        activation: Activation::Tanh,
        ..MlpConfig::new(4, &[8, 6], 3)
    };
    Mlp::new(
        &store.scope("net"),
        &cfg,
        &mut SeededRng::new(0),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert!(
        store.contains("net.features.3.weight"),
        "{:?}",
        store.names()
    );
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let build = |seed| {
        let store = ParamStore::new();
        Mlp::new(
            &store.scope(""),
            &MlpConfig::new(4, &[8], 3),
            &mut SeededRng::new(seed),
            DType::F32,
            &CPU,
        )
        .unwrap();
        vals(store.get("features.0.weight").unwrap().var().as_tensor())
    };
    assert_eq!(build(7), build(7));
    assert_ne!(build(7), build(8));
}

#[test]
fn dann_lenet_maps_28x28_to_768_features_and_10_logits() {
    let store = ParamStore::new();
    let cfg = LeNetConfig::default();
    let net = DannLeNet::new(
        &store.scope(""),
        &cfg,
        &mut SeededRng::new(1),
        DType::F32,
        &CPU,
    )
    .unwrap();
    let s = shapes(&store);
    for (name, shape) in [
        ("features.0.weight", vec![32, 3, 5, 5]),
        ("features.3.weight", vec![48, 32, 5, 5]),
        ("classifier.0.weight", vec![100, 768]),
        ("classifier.2.weight", vec![100, 100]),
        ("classifier.4.weight", vec![10, 100]),
        ("classifier.4.bias", vec![10]),
    ] {
        assert!(
            s.contains(&(name.to_string(), shape.clone())),
            "{name} {shape:?} in {s:?}"
        );
    }
    assert_eq!(s.len(), 10);
    let x = input(&[2, 3, 28, 28], 2);
    assert_eq!(net.features_t(&x, true).unwrap().dims(), [2, 768]);
    assert_eq!(net.forward_t(&x, false).unwrap().dims(), [2, 10]);
    // Wrong channel count: a typed error, no panic.
    let e = net
        .forward_t(&input(&[2, 1, 28, 28], 2), false)
        .unwrap_err();
    assert!(matches!(e, ModelError::ShapeMismatch { .. }), "{e}");
    // One input channel, larger input.
    let store = ParamStore::new();
    let cfg = LeNetConfig {
        in_channels: 1,
        input_size: 32,
        ..LeNetConfig::default()
    };
    let net = DannLeNet::new(
        &store.scope(""),
        &cfg,
        &mut SeededRng::new(1),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert_eq!(net.feature_dim(), 48 * 5 * 5);
    assert_eq!(
        net.forward_t(&input(&[3, 1, 32, 32], 3), false)
            .unwrap()
            .dims(),
        [3, 10]
    );
    let tiny = LeNetConfig {
        input_size: 12,
        ..LeNetConfig::default()
    };
    assert!(
        DannLeNet::new(
            &ParamStore::new().scope(""),
            &tiny,
            &mut SeededRng::new(1),
            DType::F32,
            &CPU
        )
        .is_err()
    );
}

#[test]
fn digits_cnn_maps_8x8_to_logits() {
    let store = ParamStore::new();
    let cfg = DigitsCnnConfig::default();
    let net = DigitsCnn::new(
        &store.scope(""),
        &cfg,
        &mut SeededRng::new(1),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert_eq!(net.feature_dim(), 128);
    let x = input(&[4, 1, 8, 8], 5);
    assert_eq!(net.features_t(&x, false).unwrap().dims(), [4, 128]);
    assert_eq!(net.forward_t(&x, true).unwrap().dims(), [4, 10]);
    assert!(store.contains("features.3.weight") && store.contains("classifier.2.bias"));
    assert!(net.forward_t(&input(&[4, 8, 8], 5), false).is_err());
}

#[test]
fn frozen_features_get_no_gradient_computed_although_used_in_forward() {
    let store = ParamStore::new();
    let m = Mlp::new(
        &store.scope(""),
        &MlpConfig::new(4, &[8], 3),
        &mut SeededRng::new(0),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert_eq!(store.freeze(&Selection::parse("features").unwrap()), 2);
    let loss = m
        .forward_t(&input(&[5, 4], 1), true)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for p in store.all() {
        let has = grads.get(p.var().as_tensor()).is_some();
        assert_eq!(has, p.name().starts_with("classifier"), "{}", p.name());
    }
    // Unfreezing brings the gradient back.
    store.unfreeze(&Selection::parse("features").unwrap());
    let loss = m
        .forward_t(&input(&[5, 4], 1), true)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    assert!(
        grads
            .get(store.get("features.0.weight").unwrap().var().as_tensor())
            .is_some()
    );
}

#[test]
fn domain_discriminator_depth_width_and_reversed_gradient() {
    let store = ParamStore::new();
    let cfg = DomainDiscriminatorConfig::new(6, 16, 3);
    let d = DomainDiscriminator::new(
        &store.scope("domain"),
        &cfg,
        &mut SeededRng::new(3),
        DType::F32,
        &CPU,
    )
    .unwrap();
    // 3 × (Linear, BatchNorm, ReLU) then Linear at position 9.
    assert!(store.contains("domain.0.weight") && store.contains("domain.1.running_var"));
    assert!(store.contains("domain.6.weight") && store.contains("domain.9.weight"));
    assert_eq!(store.get("domain.9.weight").unwrap().var().dims(), [1, 16]);
    let x = Var::from_tensor(&input(&[4, 6], 4)).unwrap();
    assert_eq!(d.forward_t(x.as_tensor(), true).unwrap().dims(), [4, 1]);
    let g_plain = d
        .forward_t(x.as_tensor(), false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g_rev = d
        .forward_reversed(x.as_tensor(), 0.5, false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let a = vals(g_plain.get(x.as_tensor()).unwrap());
    let b = vals(g_rev.get(x.as_tensor()).unwrap());
    for (p, r) in a.iter().zip(&b) {
        assert!((r + 0.5 * p).abs() < 1e-6, "reversed {r} plain {p}");
    }
    // Depth 0: one linear layer straight to two logits.
    let store = ParamStore::new();
    let cfg = DomainDiscriminatorConfig {
        depth: 0,
        outputs: 2,
        ..DomainDiscriminatorConfig::new(6, 16, 0)
    };
    let d = DomainDiscriminator::new(
        &store.scope(""),
        &cfg,
        &mut SeededRng::new(3),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(
        d.forward_t(&input(&[4, 6], 4), false).unwrap().dims(),
        [4, 2]
    );
}

#[test]
fn classifier_and_zero_shot_heads_shapes_and_normalisation() {
    let store = ParamStore::new();
    let h = ClassifierHead::new(
        &store.scope("head"),
        &ClassifierHeadConfig {
            in_dim: 6,
            hidden: vec![5],
            num_classes: 4,
            activation: Activation::Relu,
            dropout: 0.0,
        },
        &mut SeededRng::new(0),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert_eq!(
        h.forward_t(&input(&[3, 6], 0), false).unwrap().dims(),
        [3, 4]
    );
    assert!(store.contains("head.2.weight"));

    let store = ParamStore::new();
    let z = ZeroShotHeads::new(
        &store.scope("zsl"),
        &ZeroShotConfig {
            feature_dim: 6,
            attribute_dim: 5,
            embed_dim: 4,
            f_hidden: vec![7],
            g_hidden: vec![],
            activation: Activation::Relu,
            normalize: true,
        },
        &mut SeededRng::new(0),
        DType::F32,
        &CPU,
    )
    .unwrap();
    assert!(store.contains("zsl.f.2.weight") && store.contains("zsl.g.0.weight"));
    let x = input(&[3, 6], 1);
    let attrs = input(&[7, 5], 2);
    let s = z.scores(&x, &attrs, false).unwrap();
    assert_eq!(s.dims(), [3, 7]);
    assert!(
        vals(&s).iter().all(|v| v.abs() <= 1.0 + 1e-5),
        "cosines must be in [-1, 1]"
    );
    let norms = vals(
        &z.f.forward_t(&x, false)
            .unwrap()
            .sqr()
            .unwrap()
            .sum(1)
            .unwrap(),
    );
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    let pred = z.predict(&x, &attrs).unwrap();
    let best: Vec<u32> = s
        .to_vec2::<f32>()
        .unwrap()
        .iter()
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap() as u32
        })
        .collect();
    assert_eq!(pred, best);
}

fn multitask() -> (ParamStore, MultiHeadNet) {
    let store = ParamStore::new();
    let cfg = MultiHeadNetConfig {
        input_dim: 4,
        shared: vec![8, 6],
        tasks: vec![
            TaskConfig {
                name: "english".into(),
                output_dim: 3,
                input_dim: None,
                head_hidden: vec![],
            },
            TaskConfig {
                name: "mandarin".into(),
                output_dim: 5,
                input_dim: Some(7),
                head_hidden: vec![4],
            },
        ],
        activation: Activation::Relu,
        dropout: 0.0,
    };
    let mt = MultiHeadNet::from_config(
        &store.scope(""),
        &cfg,
        &mut SeededRng::new(2),
        DType::F32,
        &CPU,
    )
    .unwrap();
    (store, mt)
}

#[test]
fn multitask_routes_each_task_through_its_input_layer_trunk_and_head() {
    let (store, mt) = multitask();
    assert_eq!(mt.tasks(), ["english", "mandarin"]);
    for name in [
        "trunk.0.weight",
        "trunk.2.weight",
        "inputs.mandarin.0.weight",
        "heads.english.0.weight",
        "heads.mandarin.2.weight",
    ] {
        assert!(store.contains(name), "{name} not in {:?}", store.names());
    }
    assert_eq!(
        store.get("inputs.mandarin.0.weight").unwrap().var().dims(),
        [4, 7]
    );
    let en = mt
        .forward_task("english", &input(&[2, 4], 0), false)
        .unwrap();
    assert_eq!(en.dims(), [2, 3]);
    let zh = mt
        .forward_task("mandarin", &input(&[2, 7], 1), false)
        .unwrap();
    assert_eq!(zh.dims(), [2, 5]);
    let all = mt.forward_shared(&input(&[2, 4], 0), false).unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["english"]);
    assert_eq!(vals(&all["english"]), vals(&en));
    match mt
        .forward_task("french", &input(&[2, 4], 0), false)
        .unwrap_err()
    {
        ModelError::UnknownTask { task, known } => {
            assert_eq!(task, "french");
            assert_eq!(known, ["english", "mandarin"]);
        }
        e => panic!("{e}"),
    }
    // A loss on one task trains the trunk and its own head, never the other task's parts.
    let loss = mt
        .forward_task("english", &input(&[2, 4], 0), true)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let has = |n: &str| grads.get(store.get(n).unwrap().var().as_tensor()).is_some();
    assert!(has("trunk.0.weight") && has("heads.english.0.weight"));
    assert!(!has("heads.mandarin.0.weight") && !has("inputs.mandarin.0.weight"));
}

#[test]
fn progressive_column_leaves_the_frozen_column_unchanged_after_a_training_step() {
    let store = ParamStore::new();
    let mut rng = SeededRng::new(9);
    let col = |out| ColumnConfig {
        input_dim: 4,
        hidden: vec![6, 5],
        output_dim: out,
        activation: Activation::Relu,
        adapter_dim: Some(3),
    };
    let mut net =
        ProgressiveNet::new(&store.scope("pnn"), &col(2), &mut rng, DType::F32, &CPU).unwrap();
    let x = input(&[8, 4], 1);
    let old_out = vals(&net.forward_column(0, &x, false).unwrap());
    assert_eq!(net.add_column(&col(3), &mut rng).unwrap(), 1);
    assert_eq!(net.num_columns(), 2);
    assert!(store.contains("pnn.columns.1.laterals.1.0.alpha"));
    assert!(store.contains("pnn.columns.1.laterals.2.0.v.weight"));
    assert!(store.contains("pnn.columns.1.laterals.2.0.u.weight"));
    assert!(
        !store.contains("pnn.columns.1.laterals.0.0.alpha"),
        "no lateral into layer 0"
    );
    let before: Vec<(String, Vec<f32>)> = store
        .all()
        .iter()
        .map(|p| (p.name().to_string(), vals(p.var().as_tensor())))
        .collect();

    // One SGD step on the new task.
    let y = net.forward_t(&x, true).unwrap();
    assert_eq!(y.dims(), [8, 3]);
    let loss = y.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    for p in store.all() {
        let old = p.name().starts_with("pnn.columns.0.");
        assert_eq!(p.is_trainable(), !old, "{}", p.name());
        assert_eq!(
            grads.get(p.var().as_tensor()).is_some(),
            !old,
            "gradient presence for {}",
            p.name()
        );
    }
    for p in store.trainable() {
        let g = grads.get(p.var().as_tensor()).unwrap();
        let next = (p.var().as_tensor() - (g * 0.1).unwrap()).unwrap();
        p.var().set(&next).unwrap();
    }
    let mut moved = 0;
    for (name, old) in &before {
        let now = vals(store.get(name).unwrap().var().as_tensor());
        if name.starts_with("pnn.columns.0.") {
            assert_eq!(&now, old, "frozen {name} changed");
        } else if &now != old {
            moved += 1;
        }
    }
    assert!(
        moved > 10,
        "the new column did not train ({moved} tensors moved)"
    );
    assert_eq!(vals(&net.forward_column(0, &x, false).unwrap()), old_out);
    // A third column must have the same depth.
    let bad = ColumnConfig {
        hidden: vec![6],
        ..col(2)
    };
    assert!(net.add_column(&bad, &mut rng).is_err());
}
