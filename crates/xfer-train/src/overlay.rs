//! `KEY=VALUE` overrides of any serialisable configuration (a command line's `--set`), so a
//! program exposes every setting of a family's `Config` without a flag per field.
//!
//! `KEY` is a dotted path through the configuration as serde writes it
//! (`stage.lr`, `terms.mcc.temperature`, `progressive.hidden`); `VALUE` is JSON
//! (`0.01`, `true`, `[64,32]`, `{"steps":300}`, `"text"`), or text when it does not read as
//! JSON (`method=cdan_e` is the string `"cdan_e"`). A path that names no setting is
//! refused with the settings at that level, and the result must deserialise again, so a value
//! of the wrong type is refused too.
//!
//! ```
//! use xfer_train::Stage;
//! use xfer_train::overlay::overlay;
//!
//! let stage = Stage::sgd(0.01, 0.9).with_epochs(10);
//! let tuned: Stage = overlay(&stage, &["lr=0.05", "length={\"steps\":300}"])?;
//! assert_eq!(tuned.lr, 0.05);
//! assert_eq!(tuned.length, xfer_train::Length::Steps(300));
//! assert!(overlay(&stage, &["learning_rate=0.05"]).is_err());
//! # Ok::<(), xfer_train::TrainError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Result, TrainError};

/// `cfg` with every `KEY=VALUE` of `sets` applied in order (see the module documentation).
pub fn overlay<T: Serialize + DeserializeOwned>(cfg: &T, sets: &[impl AsRef<str>]) -> Result<T> {
    let mut tree = serde_json::to_value(cfg)
        .map_err(|e| TrainError::invalid("--set", "", format!("a serialisable config ({e})")))?;
    for set in sets {
        let set = set.as_ref();
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| TrainError::invalid("--set", set, "KEY=VALUE (e.g. stage.lr=0.01)"))?;
        let value = serde_json::from_str::<Value>(raw.trim())
            .unwrap_or_else(|_| Value::String(raw.trim().to_string()));
        let slot = slot(&mut tree, key.trim())?;
        *slot = value;
    }
    serde_json::from_value(tree).map_err(|e| {
        TrainError::invalid(
            "--set",
            sets.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" "),
            format!("values of the settings' types ({e})"),
        )
    })
}

/// The value at the dotted path `key` of `tree`; every part must name an existing field (or,
/// for a list, an index).
fn slot<'a>(tree: &'a mut Value, key: &str) -> Result<&'a mut Value> {
    let mut at = tree;
    let mut path = String::new();
    for part in key.split('.') {
        let known = |v: &Value| match v {
            Value::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
            Value::Array(a) => format!("an index below {}", a.len()),
            _ => "nothing: it is a value".into(),
        };
        let here = known(at);
        let next = match at {
            Value::Object(m) => m.get_mut(part),
            Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        at = next.ok_or_else(|| {
            let at_path = if path.is_empty() {
                "the config".to_string()
            } else {
                path.clone()
            };
            TrainError::invalid("--set", key, format!("a setting ({at_path} has {here})"))
        })?;
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(part);
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::dann;
    use xfer_models::BackboneSpec;

    #[test]
    fn nested_settings_change_and_nothing_else_does() {
        let cfg = dann::Config::paper(BackboneSpec::mlp());
        let got: dann::Config = overlay(
            &cfg,
            &[
                "terms.mcc.temperature=3.5",
                "stage.batch_size=16",
                "method=cdan_e",
                "selection=dev",
            ],
        )
        .unwrap();
        assert_eq!(got.terms.mcc.temperature, 3.5);
        assert_eq!(got.stage.batch_size, 16);
        assert_eq!(got.method, dann::Method::CdanE);
        assert_eq!(got.selection, Some(crate::Scorer::Dev));
        let mut want = cfg.clone();
        want.terms.mcc.temperature = 3.5;
        want.stage.batch_size = 16;
        want.method = dann::Method::CdanE;
        want.selection = Some(crate::Scorer::Dev);
        assert_eq!(got, want);
        assert_eq!(overlay(&cfg, &[] as &[&str]).unwrap(), cfg);
    }

    #[test]
    fn unknown_keys_wrong_types_and_missing_values_are_one_line_errors() {
        let cfg = dann::Config::paper(BackboneSpec::mlp());
        let e = overlay(&cfg, &["terms.mcc.temprature=3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("temprature") && e.contains("temperature"), "{e}");
        let e = overlay(&cfg, &["stage.batch_size=many"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch_size=many") || e.contains("invalid type"),
            "{e}"
        );
        assert!(overlay(&cfg, &["stage.batch_size"]).is_err());
        assert!(overlay(&cfg, &["method=nope"]).is_err());
        for e in [
            overlay(&cfg, &["stage.lr.x=1"]).unwrap_err(),
            overlay(&cfg, &["x=1"]).unwrap_err(),
        ] {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}
