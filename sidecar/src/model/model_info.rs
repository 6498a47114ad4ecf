//! Parsing of the metadata Ultralytics writes into its ONNX exports: `names` (a Python dict
//! literal such as `{0: 'person', 1: "kid's bike"}`), `imgsz` (`[640, 640]`) and `task`.

/// Class names from a `names` value, indexed by class id (gaps filled with the id).
pub fn parse_names(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut chars = inner.chars().peekable();
    let mut entries: Vec<(usize, String)> = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ':' {
                break;
            }
            key.push(c);
            chars.next();
        }
        chars.next()?; // ':'
        let id: usize = key.trim().parse().ok()?;
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let quote = chars.next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let mut name = String::new();
        loop {
            match chars.next()? {
                '\\' => name.push(chars.next()?),
                c if c == quote => break,
                c => name.push(c),
            }
        }
        if id > 100_000 {
            return None;
        }
        entries.push((id, name));
    }
    let len = entries.iter().map(|(id, _)| id + 1).max()?;
    let mut names: Vec<String> = (0..len).map(|i| i.to_string()).collect();
    for (id, name) in entries {
        names[id] = name;
    }
    Some(names)
}

/// `(height, width)` from an `imgsz` value: `[640, 640]`, `[480, 640]` or `640`.
pub fn parse_imgsz(s: &str) -> Option<(u32, u32)> {
    let t = s.trim().trim_start_matches('[').trim_end_matches(']');
    let nums: Vec<u32> = t
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    match nums.as_slice() {
        [v] if *v > 0 => Some((*v, *v)),
        [h, w] if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_default_model() {
        assert_eq!(
            parse_names("{0: 'Normal', 1: 'Fall'}"),
            Some(vec!["Normal".to_string(), "Fall".to_string()])
        );
    }

    #[test]
    fn names_with_quotes_commas_and_gaps() {
        let names = parse_names(r#"{0: "kid's bike", 2: 'a, b', 3: 'it\'s'}"#).unwrap();
        assert_eq!(names, vec!["kid's bike", "1", "a, b", "it's"]);
    }

    #[test]
    fn malformed_names_are_none() {
        assert_eq!(parse_names("['a', 'b']"), None);
        assert_eq!(parse_names("{0: 'a'"), None);
        assert_eq!(parse_names("{x: 'a'}"), None);
        assert_eq!(parse_names("{0: a}"), None);
        assert_eq!(parse_names("{}"), None);
    }

    #[test]
    fn imgsz_forms() {
        assert_eq!(parse_imgsz("[640, 640]"), Some((640, 640)));
        assert_eq!(parse_imgsz("[384, 640]"), Some((384, 640)));
        assert_eq!(parse_imgsz("320"), Some((320, 320)));
        assert_eq!(parse_imgsz("[0, 640]"), None);
        assert_eq!(parse_imgsz("[1, 2, 3]"), None);
    }
}
