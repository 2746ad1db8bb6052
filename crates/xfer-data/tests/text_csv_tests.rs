//! CSV/TSV through the `csv` crate (RFC 4180 quoting: delimiters, quotes and newlines inside
//! quoted fields), numeric files with quoted fields, and text data sets with their errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use common::TempDir;
use xfer_data::formats::csv::{
    CsvOptions, Header, LabelColumn, TextCsvOptions, read_csv, read_text_csv,
};
use xfer_data::{Data, DataError, LabeledSet, few_shot, load_data, stratified_split};

#[test]
fn numeric_csv_with_quoted_fields_holding_the_delimiter() {
    let dir = TempDir::new("csv-quoted");
    // A quoted class name holding the delimiter, a quoted number, a comment and a blank line.
    let p = dir.write(
        "q.csv",
        b"# measurements\nx,y,kind\n1.5,\"2\",\"cat, big\"\n\n3,4,dog\n5,6,\"cat, big\"\n",
    );
    let ds = read_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(ds.features(), &[1.5, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(ds.class_names(), &["cat, big", "dog"]);
    assert_eq!(ds.labels(), &[0, 1, 0]);
    // Semicolons, with a quoted feature column name holding one.
    let p = dir.write("s.csv", b"\"a;b\";label\n1;0\n2;1\n");
    let ds = read_csv(
        &p,
        &CsvOptions {
            delimiter: ';',
            label: LabelColumn::Name("label".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.features(), &[1.0, 2.0]);
    // A ragged row is still named by its line, counting the lines of quoted newlines.
    let p = dir.write("r.csv", b"1,\"2\n\",0\n3,4\n");
    let e = read_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::RaggedRow { line: 3, .. }), "{e}");
}

fn texts_file(dir: &TempDir) -> std::path::PathBuf {
    dir.write(
        "texts.csv",
        "id,label,text\n\
         1,pos,\"Great film, loved it\"\n\
         2,neg,\"He said \"\"meh\"\", then left\"\n\
         3,pos,\"Two\nlines\"\n\
         4,neg,plain words\n\
         5,pos,more\n\
         6,neg,less\n"
            .as_bytes(),
    )
}

#[test]
fn text_csv_keeps_commas_quotes_and_newlines_inside_texts() {
    let dir = TempDir::new("text-ok");
    let p = texts_file(&dir);
    let opts = TextCsvOptions {
        text: LabelColumn::Index(2),
        label: LabelColumn::Index(1),
        ..Default::default()
    };
    let t = read_text_csv(&p, &opts).unwrap();
    assert_eq!(
        t.len(),
        6,
        "header detected: `label` seen once, pos/neg three times"
    );
    assert_eq!(t.text(0), Some("Great film, loved it"));
    assert_eq!(t.text(1), Some("He said \"meh\", then left"));
    assert_eq!(t.text(2), Some("Two\nlines"));
    assert_eq!(t.class_names(), &["neg", "pos"]);
    assert_eq!(t.labels(), &[1, 0, 1, 0, 1, 0]);
    // The same by header names, and as TSV.
    let named = read_text_csv(
        &p,
        &TextCsvOptions {
            text: LabelColumn::Name("text".into()),
            label: LabelColumn::Name("label".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(named, t);
    let tsv = dir.write("t.tsv", b"text\tlabel\nhello, world\t1\nbye\t0\nyo\t1\n");
    let d = load_data(&format!("tsv:{}:text=0,label=1", tsv.display()), 0).unwrap();
    let Data::Text(tt) = &d else { panic!("text") };
    assert_eq!(tt.text(0), Some("hello, world"));
    assert_eq!(tt.labels(), &[1, 0, 1]);
    assert_eq!(tt.class_names(), &["0", "1"]);
    // `.tsv` with the csv scheme: tabs by extension.
    let d2 = load_data(&format!("csv:{}:text=text,label=label", tsv.display()), 0).unwrap();
    assert_eq!(d2.labels(), &[1, 0, 1]);
}

#[test]
fn text_sets_split_like_any_labelled_set() {
    let dir = TempDir::new("text-split");
    let p = texts_file(&dir);
    let d = load_data(&format!("csv:{}:text=2,label=1", p.display()), 0).unwrap();
    assert_eq!(d.len(), 6);
    let Data::Text(t) = d else { panic!("text") };
    let (s, q) = few_shot(&t, 2, 3).unwrap();
    assert_eq!((s.len(), q.len()), (4, 2));
    assert_eq!(s.class_counts(), vec![2, 2]);
    assert!(s.texts().iter().all(|x| t.texts().contains(x)));
    let (a, b) = stratified_split(&t, 0.34, 1).unwrap();
    assert_eq!(a.len() + b.len(), 6);
    // 3 texts per class < 4: every text trains (with a warning), none is left to test.
    let (s4, q4) = few_shot(&t, 4, 0).unwrap();
    assert_eq!((s4.len(), q4.len()), (6, 0));
    // The old API refuses text with a one-line pointer to the new one.
    let e = xfer_data::load(&format!("csv:{}:text=2,label=1", p.display()), 0).unwrap_err();
    assert!(e.to_string().contains("load_data"), "{e}");
}

#[test]
fn text_csv_errors_are_one_line_and_name_the_file() {
    let dir = TempDir::new("text-bad");
    let p = texts_file(&dir);
    let by_name = |text: &str, label: &str| TextCsvOptions {
        text: LabelColumn::Name(text.into()),
        label: LabelColumn::Name(label.into()),
        ..Default::default()
    };
    let e = read_text_csv(&p, &by_name("body", "label")).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("texts.csv") && m.contains("no column `body`") && m.contains("id, label, text"),
        "{m}"
    );
    assert!(!m.contains('\n'));
    let e = read_text_csv(
        &p,
        &TextCsvOptions {
            text: LabelColumn::Index(7),
            label: LabelColumn::Index(1),
            header: Header::Yes,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("text column 7 out of range"), "{e}");
    let empty = dir.write("empty.csv", b"");
    assert!(matches!(
        read_text_csv(&empty, &TextCsvOptions::default()).unwrap_err(),
        DataError::Empty(_)
    ));
    let only_header = dir.write("h.csv", b"text,label\n");
    assert!(matches!(
        read_text_csv(&only_header, &by_name("text", "label")).unwrap_err(),
        DataError::Empty(_)
    ));
    let missing = dir.write("m.csv", b"text,label\nfine,1\nno label here,\n");
    let e = read_text_csv(&missing, &by_name("text", "label")).unwrap_err();
    assert!(
        e.to_string()
            .contains("m.csv: line 3, column 2: missing label"),
        "{e}"
    );
    let short = dir.write("s.csv", b"text,label\nfine,1\nonly text\n");
    assert!(matches!(
        read_text_csv(&short, &by_name("text", "label")).unwrap_err(),
        DataError::RaggedRow { line: 3, .. }
    ));
    assert!(load_data(&format!("csv:{}:text=0,label=1,scale=2", p.display()), 0).is_err());
}
