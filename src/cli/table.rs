//! Plain text tables for human-readable CLI output.

pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `items` joined by `sep`, or `-` when there are none.
pub fn or_dash<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I, sep: &str) -> String {
    let mut out = String::new();
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(s.as_ref());
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// Limits as `100/minute` items.
pub fn limits(l: &crate::ratelimit::window::Limits) -> impl Iterator<Item = String> + '_ {
    l.iter().map(|(w, n)| format!("{n}/{w}"))
}

/// Route cap overrides as `orders: 10/minute; users: 5/second`.
pub fn route_limits(
    r: &std::collections::BTreeMap<String, crate::ratelimit::window::Limits>,
) -> String {
    or_dash(
        r.iter()
            .map(|(route, l)| format!("{route}: {}", or_dash(limits(l), ", "))),
        "; ",
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let t = super::render(&[
            vec!["A".into(), "BB".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "A    BB\nccc  d\n");
    }
}
