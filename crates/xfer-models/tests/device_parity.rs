//! Device parity of whole models: forward and backward of LeNet + DANN discriminator, a
//! ResNet-18 on a small input, an MLP with zero-shot heads and a tiny BERT, on the device named
//! by `XFER_DEVICE` (`cpu` when unset, `cuda`, `cuda:N`, `metal`) against the CPU.
//!
//! Each case builds the model twice from the same seed (once on the CPU, once on the device:
//! [`SeededRng`] draws on the CPU, so the weights are identical), runs a training-mode forward
//! on the same seeded batch, takes `L = Σ_k Σ y_k ⊙ R_k` with fixed random weights `R_k`, and
//! compares the outputs, every parameter's gradient and every buffer after the step (the batch
//! norms' running statistics). On the CPU this compares the CPU with itself; on CUDA it runs
//! the non-CPU paths of every op these models use.
//!
//! Tolerance, per tensor: `max_i |dev_i − cpu_i| ≤ tol · max(max_i |cpu_i|, floor)` in f32,
//! with `floor = 0` for outputs and parameter values and `0.1 ·` (the model's largest
//! gradient) for gradients (gradients that vanish in exact arithmetic, such as the bias of a
//! linear layer before a batch norm, are f32 rounding noise of about `2e-7 ·` that).
//! `tol = 1e-4` for the shallow models and `1e-3` for ResNet-18, whose gradients pass through
//! 20 layers and 20 batch norms. Calibration on the CPU, f32 against f64 with this measure:
//! MLP + heads 3.4e-7, LeNet + discriminator 2e-6 (a vanishing bias gradient), tiny BERT
//! 4e-7, ResNet-18 (batch 2, 64×64) 1.5e-5; CUDA's f32 differs from the exact result by the
//! same order, so the tolerances leave a margin of about 50× or more.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use xfer_models::{
    Activation, Backbone, BertConfig, BertModel, DannLeNet, DomainDiscriminator,
    DomainDiscriminatorConfig, LeNetConfig, Mlp, MlpConfig, ModuleT, ParamStore, ResNet,
    ZeroShotConfig, ZeroShotHeads,
};
use xfer_ops::SeededRng;
use xfer_ops::device::device_from_env;

/// The device under test: `XFER_DEVICE`, the CPU by default.
fn device() -> Device {
    device_from_env().expect("XFER_DEVICE names a device this build can open")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    values(t).iter().map(|v| v.abs()).fold(0.0, f64::max)
}

/// `max |a − b| / max(max |b|, floor)` (0 when they are equal).
fn rel_err(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (values(a), values(b));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(floor, f64::max);
    if diff == 0.0 {
        0.0
    } else {
        diff / scale.max(f64::MIN_POSITIVE)
    }
}

/// A seeded `N(0, 1)` f32 tensor drawn on the CPU and moved to `dev`.
fn randn(seed: u64, shape: &[usize], dev: &Device) -> Tensor {
    SeededRng::new(seed)
        .normal(shape, 0.0, 1.0, DType::F32, &Device::Cpu)
        .unwrap()
        .to_device(dev)
        .unwrap()
}

/// Named tensors (on the CPU) of one run: outputs, gradients, parameter values after it.
struct Run {
    outputs: Vec<Tensor>,
    grads: Vec<(String, Option<Tensor>)>,
    values: Vec<(String, Tensor)>,
}

fn run_on<M>(
    dev: &Device,
    build: &impl Fn(&ParamStore, &Device) -> M,
    forward: &impl Fn(&M, &Device) -> Vec<Tensor>,
) -> Run {
    let store = ParamStore::new();
    let model = build(&store, dev);
    let outs = forward(&model, dev);
    let mut rng = SeededRng::new(0x5eed);
    let mut loss: Option<Tensor> = None;
    for y in &outs {
        assert_eq!(
            y.device().location(),
            dev.location(),
            "output left the device"
        );
        let r = rng
            .normal(y.dims(), 0.0, 1.0, y.dtype(), &Device::Cpu)
            .unwrap()
            .to_device(dev)
            .unwrap();
        let term = (y * r).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            None => term,
            Some(l) => (l + term).unwrap(),
        });
    }
    let grads = loss.expect("at least one output").backward().unwrap();
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
    let mut params = store.all();
    params.sort_by(|a, b| a.name().cmp(b.name()));
    Run {
        outputs: outs.iter().map(cpu).collect(),
        grads: params
            .iter()
            .filter(|p| p.is_trainable())
            .map(|p| {
                (
                    p.name().to_string(),
                    grads.get(p.var().as_tensor()).map(cpu),
                )
            })
            .collect(),
        values: params
            .iter()
            .map(|p| (p.name().to_string(), cpu(p.var().as_tensor())))
            .collect(),
    }
}

/// Builds and runs the model on the CPU and on the device under test and compares.
fn model_parity<M>(
    what: &str,
    tol: f64,
    build: impl Fn(&ParamStore, &Device) -> M,
    forward: impl Fn(&M, &Device) -> Vec<Tensor>,
) {
    let dev = device();
    let cpu = run_on(&Device::Cpu, &build, &forward);
    let got = run_on(&dev, &build, &forward);
    let on = format!("{what} on {:?}", dev.location());
    // Gradients that are zero in exact arithmetic (the bias of a linear layer before a batch
    // norm, BERT's key bias under softmax) are rounding noise on both devices: every
    // gradient is measured against at least a tenth of the model's largest gradient.
    let floor = 0.1
        * cpu
            .grads
            .iter()
            .filter_map(|(_, g)| g.as_ref().map(max_abs))
            .fold(0.0, f64::max);
    let mut worst = (0.0f64, String::new());
    let mut check = |name: String, d: &Tensor, c: &Tensor, floor: f64| {
        let e = rel_err(d, c, floor);
        assert!(
            e <= tol,
            "{on}: {name} {:?} differs from the CPU by {e:e} (tol {tol:e})",
            c.dims()
        );
        if e > worst.0 {
            worst = (e, name);
        }
    };
    assert_eq!(got.outputs.len(), cpu.outputs.len());
    for (k, (d, c)) in got.outputs.iter().zip(&cpu.outputs).enumerate() {
        check(format!("output {k}"), d, c, 0.0);
    }
    assert_eq!(got.grads.len(), cpu.grads.len(), "{on}: parameter count");
    assert!(!cpu.grads.is_empty(), "{on}: no trainable parameters");
    for ((n, d), (m, c)) in got.grads.iter().zip(&cpu.grads) {
        assert_eq!(n, m);
        match (d, c) {
            (Some(d), Some(c)) => check(format!("gradient of {n}"), d, c, floor),
            // A parameter the forward does not use (e.g. BERT's pooler) on both devices.
            (None, None) => {}
            _ => panic!(
                "{on}: gradient of {n} on the device: {}, on the CPU: {}",
                d.is_some(),
                c.is_some()
            ),
        }
    }
    for ((n, d), (_, c)) in got.values.iter().zip(&cpu.values) {
        check(format!("value of {n} after the forward"), d, c, 0.0);
    }
    println!(
        "parity {on}: {} outputs, {} gradients, {} values; max relative error {:.2e} ({}) (tol {tol:.0e})",
        cpu.outputs.len(),
        cpu.grads.len(),
        cpu.values.len(),
        worst.0,
        if worst.1.is_empty() { "-" } else { &worst.1 }
    );
}

#[test]
fn lenet_with_reversed_domain_discriminator_matches_the_cpu_on_device() {
    struct Dann {
        net: DannLeNet,
        disc: DomainDiscriminator,
    }
    model_parity(
        "DANN LeNet + domain discriminator (batch 6, 3x28x28)",
        1e-4,
        |store, dev| {
            let mut rng = SeededRng::new(7);
            let net = DannLeNet::new(
                &store.scope(""),
                &LeNetConfig::default(),
                &mut rng,
                DType::F32,
                dev,
            )
            .unwrap();
            let disc = DomainDiscriminator::new(
                &store.scope("domain"),
                &DomainDiscriminatorConfig::new(768, 64, 2),
                &mut rng,
                DType::F32,
                dev,
            )
            .unwrap();
            Dann { net, disc }
        },
        |m, dev| {
            let x = randn(1, &[6, 3, 28, 28], dev);
            let f = m.net.features_t(&x, true).unwrap();
            let logits = m.net.head_forward(&f, true).unwrap();
            let domain = m.disc.forward_reversed(&f, 0.5, true).unwrap();
            vec![logits, domain]
        },
    );
}

#[test]
fn resnet18_on_a_small_input_matches_the_cpu_on_device() {
    model_parity(
        "ResNet-18 train mode (batch 2, 3x64x64)",
        1e-3,
        |store, dev| ResNet::resnet18(store, 10, 11, DType::F32, dev).unwrap(),
        |m, dev| {
            let x = randn(2, &[2, 3, 64, 64], dev);
            vec![m.forward_t(&x, true).unwrap()]
        },
    );
}

#[test]
fn mlp_and_zero_shot_heads_match_the_cpu_on_device() {
    struct Zsl {
        mlp: Mlp,
        heads: ZeroShotHeads,
    }
    model_parity(
        "MLP 20-32-16-5 + zero-shot heads (batch 8)",
        1e-4,
        |store, dev| {
            let mut rng = SeededRng::new(13);
            let mlp = Mlp::new(
                &store.scope("mlp"),
                &MlpConfig::new(20, &[32, 16], 5),
                &mut rng,
                DType::F32,
                dev,
            )
            .unwrap();
            let heads = ZeroShotHeads::new(
                &store.scope("zsl"),
                &ZeroShotConfig {
                    feature_dim: 16,
                    attribute_dim: 12,
                    embed_dim: 8,
                    f_hidden: vec![24],
                    g_hidden: vec![],
                    activation: Activation::Relu,
                    normalize: true,
                },
                &mut rng,
                DType::F32,
                dev,
            )
            .unwrap();
            Zsl { mlp, heads }
        },
        |m, dev| {
            let x = randn(3, &[8, 20], dev);
            let attributes = randn(4, &[7, 12], dev);
            let f = m.mlp.features_t(&x, true).unwrap();
            let logits = m.mlp.head_forward(&f).unwrap();
            let scores = m.heads.scores(&f, &attributes, true).unwrap();
            vec![logits, scores]
        },
    );
}

#[test]
fn tiny_bert_with_padding_and_dropout_matches_the_cpu_on_device() {
    let config = BertConfig::from_json_str(
        r#"{"vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 32, "hidden_act": "gelu",
            "max_position_embeddings": 16, "type_vocab_size": 2,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}"#,
        std::path::Path::new("tiny-bert.json"),
    )
    .unwrap();
    model_parity(
        "tiny BERT (2 layers, hidden 16, batch 2 x 7 tokens, padding, dropout)",
        1e-4,
        |store, dev| {
            BertModel::new(
                &store.scope(""),
                &config,
                &mut SeededRng::new(17),
                DType::F32,
                dev,
            )
            .unwrap()
        },
        |m, dev| {
            let ids: [u32; 14] = [2, 7, 11, 29, 5, 3, 0, 2, 13, 17, 19, 23, 4, 3];
            let mask: [u32; 14] = [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1];
            let ids = Tensor::from_slice(&ids, (2, 7), dev).unwrap();
            let mask = Tensor::from_slice(&mask, (2, 7), dev).unwrap();
            vec![m.forward_t(&ids, None, Some(&mask), true).unwrap()]
        },
    );
}
