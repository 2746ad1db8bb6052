//! Choosing parameters by name: a dotted prefix or a glob.
//!
//! A small local matcher (xfer-losses must not depend on xfer-models); its rules are the
//! same as `xfer_models::Selection`'s prefix and glob forms, so one pattern means the same
//! thing everywhere.

/// A parameter-name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// The name equals the prefix or starts with `prefix.`: `layer1` selects
    /// `layer1.0.conv1.weight` but not `layer10.weight`. An empty prefix selects everything.
    Prefix(String),
    /// `*` matches any run of characters (dots included), `?` exactly one character, every
    /// other character itself; the whole name must match.
    Glob(String),
}

impl NamePattern {
    /// A glob if the text holds `*` or `?`, otherwise a dotted prefix.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.contains('*') || s.contains('?') {
            NamePattern::Glob(s.to_string())
        } else {
            NamePattern::Prefix(s.to_string())
        }
    }

    /// Whether `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Prefix(p) => {
                let p = p.trim_end_matches('.');
                p.is_empty()
                    || name == p
                    || name
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('.'))
            }
            NamePattern::Glob(g) => {
                let p: Vec<char> = g.chars().collect();
                let s: Vec<char> = name.chars().collect();
                glob_match(&p, &s)
            }
        }
    }
}

impl From<&str> for NamePattern {
    fn from(s: &str) -> Self {
        NamePattern::parse(s)
    }
}

impl From<String> for NamePattern {
    fn from(s: String) -> Self {
        NamePattern::parse(&s)
    }
}

/// Iterative glob matcher, backtracking to the last `*` only (linear in practice, never
/// exponential).
fn glob_match(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match (p.get(pi), s.get(si)) {
            (Some('*'), _) => {
                star = Some((pi, si));
                pi += 1;
            }
            (Some(&pc), Some(&sc)) if pc == '?' || pc == sc => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::NamePattern;

    #[test]
    fn prefix_stops_at_a_dot_boundary() {
        let p = NamePattern::parse("layer1");
        assert!(p.matches("layer1"));
        assert!(p.matches("layer1.0.conv1.weight"));
        assert!(!p.matches("layer10.weight"));
        assert!(NamePattern::parse("layer1.").matches("layer1.bn.bias"));
        assert!(NamePattern::parse("").matches("anything"));
    }

    #[test]
    fn glob_star_and_question_mark() {
        let g = NamePattern::parse("layer?.*.weight");
        assert!(g.matches("layer1.0.conv1.weight"));
        assert!(!g.matches("layer10.0.conv1.bias"));
        assert!(!g.matches("fc.weight"));
        assert!(NamePattern::parse("*").matches(""));
        assert!(NamePattern::parse("*.bias").matches("a.b.bias"));
        assert!(!NamePattern::parse("*.bias").matches("a.b.bias2"));
        assert!(NamePattern::parse("a*b*c").matches("aXbYbZc"));
        assert!(!NamePattern::parse("a*b*c").matches("aXbYbZ"));
        assert!(NamePattern::parse("fc.?").matches("fc.é"));
        assert!(!NamePattern::parse("fc.?").matches("fc."));
    }
}
