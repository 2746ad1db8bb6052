//! Bad input of every kind gives a typed error that names the tensor — never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use xfer_losses::*;
use xfer_ops::ParamSnapshot;

fn ints(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::U32, &Device::Cpu).unwrap()
}

/// The error must exist, and its message must name `tensor`.
fn names<T: std::fmt::Debug>(r: Result<T>, tensor: &str) {
    match r {
        Ok(v) => panic!("expected an error naming `{tensor}`, got Ok({v:?})"),
        Err(e) => assert!(
            e.to_string().contains(tensor),
            "`{e}` does not name `{tensor}`"
        ),
    }
}

#[test]
fn integer_tensors_where_floats_are_needed_are_dtype_errors() {
    let f = t(&[0.0; 4], &[2, 2]);
    names(cross_entropy(&ints(&[2, 2]), &labels(&[0, 1])), "logits");
    names(
        prediction_entropy(&ints(&[2, 2]), Reduction::Mean),
        "logits",
    );
    names(
        bce_with_logits(&ints(&[2]), &ints(&[2]), Reduction::Mean),
        "logits",
    );
    names(kl_distillation(&ints(&[2, 2]), &f, 1.0), "student_logits");
    names(kl_distillation(&f, &ints(&[2, 2]), 1.0), "teacher_logits");
    names(
        MultiKernelMmd::default().forward(&f, &ints(&[2, 2])),
        "target",
    );
    names(coral(&ints(&[2, 2]), &f), "source");
    names(
        compatibility(&f, &ints(&[2, 2]), Compatibility::Dot),
        "classes",
    );
    names(
        ZeroShotHinge::new(1.0)
            .unwrap()
            .forward(&ints(&[2, 2]), &labels(&[0, 1])),
        "scores",
    );
    names(
        masked_mean(&ints(&[2]), &t(&[1.0, 1.0], &[2])),
        "per_example",
    );
    names(weighted_sum(&[ints(&[])], &[1.0]), "losses[0]");
    let mixed = t(&[0.0; 4], &[2, 2]).to_dtype(DType::F32).unwrap();
    names(coral(&f, &mixed), "target");
    names(logit_mse(&f, &mixed), "teacher_logits");
    let dann = DomainAdversarialLoss::new(|x: &Tensor| x.sum(1));
    names(dann.forward(&f, &mixed, 1.0), "target_features");
    let int_logits = DomainAdversarialLoss::new(|x: &Tensor| x.sum(1)?.to_dtype(DType::U32));
    names(int_logits.forward(&f, &f, 1.0), "discriminator output");
    let w = Var::from_tensor(&ints(&[2, 2])).unwrap();
    let l2 = L2Penalty::new(1.0).unwrap();
    names(l2.penalty(&[("int.weight", &w)]), "int.weight");
}

#[test]
fn label_tensors_of_the_wrong_kind_or_range_are_refused_before_use() {
    let s = t(&[0.0; 6], &[2, 3]);
    names(cross_entropy(&s, &t(&[0.0, 1.0], &[2])), "targets");
    names(
        cross_entropy(&s, &labels(&[0, 1, 2, 0]).reshape((2, 2)).unwrap()),
        "targets",
    );
    names(cross_entropy(&s, &labels(&[-3, 0])), "targets");
    names(cross_entropy(&s, &labels(&[0, i64::MAX])), "targets");
    let u8_bad = Tensor::new(&[0u8, 200], &Device::Cpu).unwrap();
    names(cross_entropy(&s, &u8_bad), "targets");
    let hinge = ZeroShotHinge::new(1.0).unwrap();
    names(hinge.forward(&s, &labels(&[3, 0])), "labels");
    names(
        attribute_bce(&s, &t(&[0.0; 6], &[2, 3]), &labels(&[0, 2])),
        "labels",
    );
    names(
        CrossEntropyLoss::new().forward_masked(&s, &labels(&[0, 1]), &t(&[1.0], &[1])),
        "mask",
    );
}

#[test]
fn empty_batches_and_wrong_ranks_are_shape_errors() {
    let empty = Tensor::zeros((0, 3), DType::F64, &Device::Cpu).unwrap();
    let ok = t(&[0.0; 6], &[2, 3]);
    names(cross_entropy(&empty, &labels(&[])), "logits");
    names(
        prediction_entropy(&t(&[0.0; 3], &[3]), Reduction::Mean),
        "logits",
    );
    names(bce_with_logits(&empty, &empty, Reduction::Mean), "logits");
    names(kl_distillation(&empty, &empty, 1.0), "student_logits");
    names(MultiKernelMmd::default().forward(&empty, &ok), "source");
    names(coral(&ok, &empty), "target");
    names(
        compatibility(&t(&[0.0; 3], &[3]), &ok, Compatibility::Cosine),
        "inputs",
    );
    names(
        ZeroShotHinge::new(1.0)
            .unwrap()
            .forward(&t(&[0.0; 8], &[2, 2, 2]), &labels(&[0, 1])),
        "scores",
    );
    names(
        dap_class_scores(&ok, &t(&[0.0; 4], &[2, 2])),
        "class_attributes",
    );
    names(masked_mean(&ok, &t(&[1.0, 1.0], &[2])), "per_example");
    let uw = UncertaintyWeighting::new(1, DType::F64, &Device::Cpu).unwrap();
    names(uw.forward(std::slice::from_ref(&ok)), "losses[0]");
    let bad_vars = Var::from_tensor(&ok).unwrap();
    names(UncertaintyWeighting::from_log_vars(bad_vars), "log_vars");
    let dann = DomainAdversarialLoss::new(|x: &Tensor| x.sum(1));
    names(dann.forward(&ok, &empty, 0.5), "target_features");
    names(
        feature_closeness(&[(&ok, &t(&[0.0; 3], &[1, 3]))]),
        "pairs[0].1",
    );
    // A parameter whose anchor has another shape is named.
    let reg = L2Sp::new(
        ParamSnapshot::capture([("conv.weight", &t(&[0.0; 4], &[4, 1]))]).unwrap(),
        0.1,
        0.0,
    )
    .unwrap();
    names(
        reg.penalty(&[("conv.weight", &t(&[0.0; 4], &[2, 2]))]),
        "conv.weight",
    );
}

#[test]
fn settings_out_of_range_are_argument_errors() {
    assert!(matches!(
        CrossEntropyLoss::new().with_label_smoothing(-0.1),
        Err(LossError::Argument {
            arg: "label_smoothing",
            ..
        })
    ));
    assert!(matches!(
        DistillationLoss::kl(1.0, f64::INFINITY),
        Err(LossError::Argument {
            arg: "temperature",
            ..
        })
    ));
    assert!(matches!(
        ZeroShotHinge::new(f64::NAN),
        Err(LossError::Argument { arg: "margin", .. })
    ));
    assert!(matches!(
        MultiKernelMmd::new(vec![GaussianKernel::Relative { alpha: -1.0 }]),
        Err(LossError::Argument { arg: "alpha", .. })
    ));
    assert!(matches!(
        L2Sp::new(ParamSnapshot::default(), 0.1, 0.0)
            .unwrap()
            .with_alpha_group("x", -2.0),
        Err(LossError::Argument { arg: "alpha", .. })
    ));
    assert!(matches!(
        weighted_sum(&[t(&[1.0], &[])], &[f64::NAN]),
        Err(LossError::Argument { arg: "weights", .. })
    ));
    assert!(matches!(
        weighted_sum::<Tensor>(&[], &[]),
        Err(LossError::Argument { arg: "losses", .. })
    ));
}
