//! Plate text: CTC greedy decoding of the recogniser's output, normalisation, a region guess
//! from the plate's format, and edit distance for dedupe. Pure functions.

use ndarray::ArrayView2;

/// The recogniser's alphabet: index 0 is the CTC blank, 1..=n the dictionary lines, n + 1 a space.
pub struct Charset {
    chars: Vec<String>,
}

impl Charset {
    /// From the dictionary file's text, one character per line (PaddleOCR's `ppocr_keys`).
    pub fn from_dict(text: &str) -> Self {
        let mut chars = vec![String::new()]; // blank
        chars.extend(text.lines().map(|l| l.trim_end_matches('\r').to_string()));
        chars.push(" ".into());
        Charset { chars }
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.len() <= 2
    }
}

/// A raw read: the text and the probability of each emitted character.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub text: String,
    pub char_probs: Vec<f32>,
}

/// CTC greedy decoding of `probs` (`[T, classes]`, softmax): best class per step, repeats
/// collapsed, blanks dropped.
pub fn ctc_greedy(probs: ArrayView2<f32>, charset: &Charset) -> Read {
    let mut text = String::new();
    let mut char_probs = Vec::new();
    let mut prev = 0usize;
    for row in probs.rows() {
        let (best, p) = row.iter().enumerate().fold((0, f32::MIN), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
        if best != 0 && best != prev {
            if let Some(c) = charset.chars.get(best) {
                text.push_str(c);
                char_probs.push(p);
            }
        }
        prev = best;
    }
    Read { text, char_probs }
}

/// Normalisation rules for plate text.
#[derive(Debug, Clone)]
pub struct PlateRules {
    pub min_len: usize,
    pub max_len: usize,
    /// When set, a normalised plate must match it (e.g. `^[0-9][A-Z]{2}[0-9]{4}$`).
    pub format: Option<regex::Regex>,
}

/// Upper case, only A-Z and 0-9 (the probabilities follow the kept characters). `None` when
/// the result breaks the length or format rules.
pub fn normalise(read: &Read, rules: &PlateRules) -> Option<Read> {
    let mut text = String::new();
    let mut char_probs = Vec::new();
    // Each emitted character has one probability; a multi-char token (rare) shares it.
    for (token, p) in split_tokens(&read.text, &read.char_probs) {
        for c in token.chars().flat_map(char::to_uppercase) {
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                text.push(c);
                char_probs.push(p);
            }
        }
    }
    let ok_len = (rules.min_len..=rules.max_len).contains(&text.len());
    let ok_format = rules.format.as_ref().is_none_or(|re| re.is_match(&text));
    (ok_len && ok_format).then_some(Read { text, char_probs })
}

/// Pairs each character of `text` with its probability (one per char; extra chars reuse the last).
fn split_tokens<'a>(text: &'a str, probs: &'a [f32]) -> impl Iterator<Item = (String, f32)> + 'a {
    text.chars().enumerate().map(move |(i, c)| (c.to_string(), probs.get(i).or(probs.last()).copied().unwrap_or(0.0)))
}

/// Mean character probability (0 for an empty read).
pub fn confidence(read: &Read) -> f32 {
    if read.char_probs.is_empty() {
        0.0
    } else {
        read.char_probs.iter().sum::<f32>() / read.char_probs.len() as f32
    }
}

/// Plate formats whose shape names one region without much doubt. Checked in order; the first
/// match wins; anything else is `None` (unknown), which is more honest than a guess.
/// `L` = letter, `D` = digit.
pub const REGION_RULES: &[(&str, &str)] = &[
    // Czech Republic: D L (L|D) DDDD, e.g. 5AU5341
    ("CZ", "DLXDDDD"),
    // United Kingdom (2001 format): LL DD LLL, e.g. AB12CDE
    ("GB", "LLDDLLL"),
    // Brazil / Mercosur: LLL D L DD, e.g. ABC1D23
    ("BR", "LLLDLDD"),
    // Netherlands sidecodes 7-11: DD LLL D, D LLL DD, DD LL DDD... (only the unambiguous LL-DDD-L)
    ("NL", "LLDDDL"),
];

fn shape_matches(text: &str, shape: &str) -> bool {
    text.len() == shape.len()
        && text.chars().zip(shape.chars()).all(|(c, s)| match s {
            'L' => c.is_ascii_uppercase(),
            'D' => c.is_ascii_digit(),
            _ => c.is_ascii_alphanumeric(),
        })
}

/// The region a normalised plate's format points to, if any (see [`REGION_RULES`]).
pub fn region_of(plate: &str) -> Option<&'static str> {
    REGION_RULES.iter().find(|(_, shape)| shape_matches(plate, shape)).map(|(r, _)| *r)
}

/// Levenshtein distance (plates are short; O(n*m) is nothing).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn charset() -> Charset {
        Charset::from_dict("A\nU\n5\n3\n4\n1\na")
    }

    /// Steps as (class index, prob); other classes get the rest spread evenly.
    fn probs(steps: &[(usize, f32)], classes: usize) -> Array2<f32> {
        let mut a = Array2::from_elem((steps.len(), classes), 0.0);
        for (t, &(c, p)) in steps.iter().enumerate() {
            a[[t, c]] = p;
        }
        a
    }

    #[test]
    fn ctc_collapses_repeats_and_drops_blanks() {
        let cs = charset(); // 0 blank, 1 A, 2 U, 3 5, 4 3, 5 4, 6 1, 7 a, 8 space
        let p = probs(&[(3, 0.9), (3, 0.8), (0, 0.99), (1, 0.95), (0, 0.9), (1, 0.7), (2, 0.6)], cs.len());
        let r = ctc_greedy(p.view(), &cs);
        assert_eq!(r.text, "5AAU");
        assert_eq!(r.char_probs, [0.9, 0.95, 0.7, 0.6]);
        assert!((confidence(&r) - 0.7875).abs() < 1e-6);
        let space = probs(&[(8, 0.9)], cs.len());
        assert_eq!(ctc_greedy(space.view(), &cs).text, " ");
    }

    #[test]
    fn normalise_keeps_a_z_0_9_upper_case_within_rules() {
        let rules = PlateRules { min_len: 4, max_len: 10, format: None };
        let r = Read { text: "5au 53-41".into(), char_probs: vec![0.9, 0.8, 0.7, 0.1, 0.9, 0.9, 0.2, 0.9, 0.9] };
        let n = normalise(&r, &rules).unwrap();
        assert_eq!(n.text, "5AU5341");
        assert_eq!(n.char_probs, [0.9, 0.8, 0.7, 0.9, 0.9, 0.9, 0.9]);
        assert!(normalise(&Read { text: "AB1".into(), char_probs: vec![1.0; 3] }, &rules).is_none(), "too short");
        let strict = PlateRules { format: Some(regex::Regex::new("^[0-9][A-Z]{2}[0-9]{4}$").unwrap()), ..rules };
        assert!(normalise(&r, &strict).is_some());
        assert!(normalise(&Read { text: "AB12CDE".into(), char_probs: vec![1.0; 7] }, &strict).is_none());
    }

    #[test]
    fn region_rules() {
        assert_eq!(region_of("5AU5341"), Some("CZ"));
        assert_eq!(region_of("5A15341"), Some("CZ"));
        assert_eq!(region_of("AB12CDE"), Some("GB"));
        assert_eq!(region_of("ABC1D23"), Some("BR"));
        assert_eq!(region_of("ABC1234"), None, "several countries write LLLDDDD");
        assert_eq!(region_of(""), None);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("5AU5341", "5AU5341"), 0);
        assert_eq!(edit_distance("5AU5341", "5AU534"), 1);
        assert_eq!(edit_distance("5AU5341", "SAU5341"), 1);
        assert_eq!(edit_distance("5AU5341", "5UA5341"), 2);
        assert_eq!(edit_distance("", "ABC"), 3);
    }
}
