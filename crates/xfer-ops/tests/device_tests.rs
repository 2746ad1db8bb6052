//! Device selection: CPU by default, parsing of device names, clear errors for devices this
//! build cannot provide.

use xfer_ops::{DevicePreference, select_device};

#[test]
fn cpu_is_the_default_and_always_available() {
    assert_eq!(DevicePreference::default(), DevicePreference::Cpu);
    assert!(select_device(DevicePreference::Cpu).unwrap().is_cpu());
    // The best available device is at least the CPU.
    select_device(DevicePreference::BestAvailable).unwrap();
}

#[test]
fn device_names_parse() {
    let p = |s: &str| s.parse::<DevicePreference>().unwrap();
    assert_eq!(p("cpu"), DevicePreference::Cpu);
    assert_eq!(p(" CPU "), DevicePreference::Cpu);
    assert_eq!(p("auto"), DevicePreference::BestAvailable);
    assert_eq!(p("best"), DevicePreference::BestAvailable);
    assert_eq!(p("cuda"), DevicePreference::Cuda(0));
    assert_eq!(p("cuda:1"), DevicePreference::Cuda(1));
    assert_eq!(p("metal"), DevicePreference::Metal(0));
    assert_eq!(p("metal:2"), DevicePreference::Metal(2));
}

#[test]
fn bad_device_names_are_errors_naming_the_input() {
    let e = "tpu".parse::<DevicePreference>().unwrap_err().to_string();
    assert!(e.contains("tpu"), "{e}");
    let e = "cuda:x"
        .parse::<DevicePreference>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("cuda:x"), "{e}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_an_error_not_a_panic() {
    let e = select_device(DevicePreference::Cuda(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cuda"), "{e}");
}

#[cfg(not(feature = "metal"))]
#[test]
fn metal_without_the_feature_is_an_error_not_a_panic() {
    let e = select_device(DevicePreference::Metal(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("metal"), "{e}");
}
