//! all-MiniLM-L6-v2 against sentence-transformers: the fixtures in `shared/fixtures`
//! (`minilm_embeddings.*`, see the README there) hold the token ids, attention mask and
//! normalised embeddings sentence-transformers computed for six sentences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use xfer_models::{ModelError, SentenceEncoder};

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("XFER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    if p.join("models/all-MiniLM-L6-v2/model.safetensors")
        .is_file()
        && p.join("fixtures/minilm_embeddings.safetensors").is_file()
    {
        Some(p)
    } else {
        println!(
            "skipped: all-MiniLM-L6-v2 parity (shared data not found at {})",
            p.display()
        );
        None
    }
}

/// One encoder for all tests of this file (loading reads 90 MB).
fn encoder(sh: &std::path::Path) -> &'static SentenceEncoder {
    static ENC: OnceLock<SentenceEncoder> = OnceLock::new();
    ENC.get_or_init(|| SentenceEncoder::load(sh.join("models/all-MiniLM-L6-v2")).unwrap())
}

fn sentences(sh: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(sh.join("fixtures/minilm_embeddings.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn fixture(sh: &std::path::Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(
        sh.join("fixtures/minilm_embeddings.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn minilm_token_ids_match_sentence_transformers() {
    let Some(sh) = shared() else { return };
    let enc = encoder(&sh);
    let s = sentences(&sh);
    let refs: Vec<&str> = s.iter().map(String::as_str).collect();
    let batch = enc.tokenize(&refs).unwrap();
    let fx = fixture(&sh);
    let want_ids: Vec<Vec<i64>> = fx["input_ids"].to_vec2().unwrap();
    let want_mask: Vec<Vec<i64>> = fx["attention_mask"].to_vec2().unwrap();
    let got_ids: Vec<Vec<i64>> = batch
        .ids
        .iter()
        .map(|r| r.iter().map(|&i| i64::from(i)).collect())
        .collect();
    let got_mask: Vec<Vec<i64>> = batch
        .mask
        .iter()
        .map(|r| r.iter().map(|&i| i64::from(i)).collect())
        .collect();
    assert_eq!(got_ids, want_ids);
    assert_eq!(got_mask, want_mask);
    assert_eq!(batch.input_ids.dims(), fx["input_ids"].dims());
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let Some(sh) = shared() else { return };
    let enc = encoder(&sh);
    let s = sentences(&sh);
    let refs: Vec<&str> = s.iter().map(String::as_str).collect();
    let got = enc.encode(&refs).unwrap();
    let fx = fixture(&sh);
    assert_eq!(got.dims(), fx["embeddings"].dims());
    assert_eq!(got.dims(), &[6, 384]);
    let (mut worst_abs, mut worst_cos) = (0.0f64, 1.0f64);
    for (a, b) in rows(&got).iter().zip(rows(&fx["embeddings"]).iter()) {
        worst_abs = worst_abs.max(max_abs_diff(a, b));
        worst_cos = worst_cos.min(cosine(a, b));
    }
    // The embeddings are unit vectors, so absolute and relative error coincide up to the
    // largest component (≤ 1).
    let scale = rows(&fx["embeddings"])
        .iter()
        .flatten()
        .fold(0.0f64, |m, x| m.max(x.abs()));
    println!(
        "MiniLM embeddings: max abs error {worst_abs:.3e} (relative to max |component| {:.3e}), \
         min cosine 1 − {:.3e}",
        worst_abs / scale,
        1.0 - worst_cos
    );
    assert!(worst_abs < 1e-4, "max abs error {worst_abs}");
    assert!(worst_cos >= 0.9999, "min cosine {worst_cos}");
}

/// A text of many distinct words (well over 256 word pieces).
fn long_text(words: usize) -> String {
    let vocab = [
        "transfer",
        "learning",
        "reuses",
        "knowledge",
        "from",
        "a",
        "source",
        "task",
        "to",
        "improve",
        "performance",
        "on",
        "target",
        "domain",
        "with",
        "few",
        "labels",
        "and",
        "the",
        "features",
        "of",
        "network",
    ];
    (0..words)
        .map(|i| vocab[(i * 7 + i / 3) % vocab.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn minilm_truncates_long_input_to_256_tokens() {
    let Some(sh) = shared() else { return };
    let enc = encoder(&sh);
    let long = long_text(400);
    let longer = format!("{long} zebras quietly compute eigenvalues in Reykjavík");
    let short = "A cat sits quietly on the windowsill.";
    let batch = enc.tokenize(&[&long, &longer, short]).unwrap();
    assert_eq!(batch.seq_len(), 256);
    for row in &batch.ids[..2] {
        assert_eq!(row.len(), 256);
        assert_eq!(row[0], enc.tokenizer().token_to_id("[CLS]").unwrap());
        assert_eq!(row[255], enc.tokenizer().token_to_id("[SEP]").unwrap());
    }
    // Both long texts keep the same first 254 word pieces: what follows is cut off.
    assert_eq!(batch.ids[0], batch.ids[1]);
    // The short sentence is padded with [PAD] and masked.
    let real: u32 = batch.mask[2].iter().sum();
    assert!(real < 20);
    assert!(batch.ids[2][real as usize..].iter().all(|&i| i == 0));

    let e = rows(&enc.embed(&batch, false).unwrap());
    assert!(
        max_abs_diff(&e[0], &e[1]) < 1e-6,
        "truncated texts must embed alike"
    );
    // Padding to 256 next to the long texts does not change the short sentence's embedding
    // (the fixture's value for it was computed padded to 17 tokens).
    let fx = rows(&fixture(&sh)["embeddings"]);
    let d = max_abs_diff(&e[2], &fx[4]);
    println!("short sentence padded to 256: max abs error vs sentence-transformers {d:.3e}");
    assert!(d < 1e-4, "padding changed the embedding: {d}");
    for r in &e {
        let n: f64 = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((n - 1.0).abs() < 1e-5 && r.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn minilm_handles_non_ascii_text() {
    let Some(sh) = shared() else { return };
    let enc = encoder(&sh);
    let tok = enc.tokenizer();
    // The uncased BERT normaliser lower-cases and strips accents: both spellings are the same
    // token ids, hence the same embedding.
    let texts = [
        "Café naïve façade, Zürich Ångström",
        "cafe naive facade, zurich angstrom",
        "中国大学，日本人",
        "Привет мир 🙂",
    ];
    let b = enc.tokenize(&texts).unwrap();
    let real = |i: usize| -> Vec<u32> {
        b.ids[i]
            .iter()
            .zip(&b.mask[i])
            .filter(|(_, m)| **m == 1)
            .map(|(id, _)| *id)
            .collect()
    };
    assert_eq!(real(0), real(1), "{:?}", tok.ids_to_tokens(&real(0)));
    // CJK characters are split one per token.
    let zh = tok.ids_to_tokens(&real(2));
    assert_eq!(
        zh,
        [
            "[CLS]", "中", "国", "大", "学", "，", "日", "本", "人", "[SEP]"
        ],
        "{zh:?}"
    );
    // Even those missing from the vocabulary: one [UNK] each.
    let unk = tok.ids_to_tokens(&enc.tokenize(&["你好"]).unwrap().ids[0]);
    assert_eq!(unk, ["[CLS]", "[UNK]", "[UNK]", "[SEP]"]);
    let ru = tok.ids_to_tokens(&real(3));
    println!("tokens: {zh:?} {ru:?}");
    assert_eq!(ru.first().map(String::as_str), Some("[CLS]"));
    assert!(
        ru.iter().any(|t| t == "[UNK]"),
        "the emoji is not in the vocabulary: {ru:?}"
    );
    let e = rows(&enc.embed(&b, false).unwrap());
    assert!(max_abs_diff(&e[0], &e[1]) < 1e-6);
    for r in &e {
        let n: f64 = r.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((n - 1.0).abs() < 1e-5 && r.iter().all(|x| x.is_finite()));
    }
    assert_eq!(enc.encode(&[]).unwrap().dims(), &[0, 384]);
}

#[test]
fn minilm_fine_tuning_reaches_every_layer() {
    let Some(sh) = shared() else { return };
    let enc = encoder(&sh);
    let b = enc
        .tokenize(&["A man is playing a guitar.", "Stocks fell."])
        .unwrap();
    let e = enc.embed(&b, true).unwrap();
    // Pull the two sentences together: the gradient must reach attention (softmax), layer
    // norms and the embeddings.
    let loss = (e.get(0).unwrap() * e.get(1).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap();
    let g = loss.backward().unwrap();
    for name in [
        "embeddings.word_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.self.key.weight",
        "encoder.layer.5.output.LayerNorm.weight",
    ] {
        let p = enc.store().get(name).unwrap();
        let n = g
            .get(p.var().as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: {n}");
    }
}

#[test]
fn minilm_bad_model_directories_give_typed_errors() {
    let Some(sh) = shared() else { return };
    let src = sh.join("models/all-MiniLM-L6-v2");
    let dir = std::env::temp_dir().join(format!("xfer-parity-bert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    // An activation nobody implements.
    let cfg = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"gelu\"", "\"swish\"");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    match SentenceEncoder::load(&dir) {
        Err(ModelError::Config(m)) => assert!(m.contains("config.json") && m.contains("swish")),
        other => panic!("expected a config error, got {other:?}"),
    }
    // A valid config but a weights file that is missing one encoder tensor.
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let mut ts =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    ts.retain(|k, _| {
        !k.starts_with("encoder.layer.3.")
            && !k.starts_with("encoder.layer.4.")
            && !k.starts_with("encoder.layer.5.")
    });
    ts.remove("encoder.layer.2.output.dense.bias");
    candle_core::safetensors::save(&ts, dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["num_hidden_layers"] = 3.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    match SentenceEncoder::load(&dir) {
        Err(ModelError::MissingTensor { path, name }) => {
            assert_eq!(path, dir.join("model.safetensors"));
            assert_eq!(name, "encoder.layer.2.output.dense.bias");
        }
        other => panic!("expected a missing-tensor error, got {other:?}"),
    }
    // No weights at all.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(matches!(
        SentenceEncoder::load(&dir),
        Err(ModelError::File { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
