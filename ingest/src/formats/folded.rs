//! Folded stacks: `groups` (`frame;frame;frame count` per line, Pyroscope's default `/ingest`
//! format, what py-spy's `--format raw` and the collapsing scripts write) and `lines` (one
//! stack per line, each line counting once).

use super::Stacks;

/// The lines of `body`: split on `\n`, a trailing `\r` dropped.
fn lines(body: &str) -> impl Iterator<Item = (usize, &str)> {
    body.lines().enumerate().map(|(i, line)| (i + 1, line))
}

/// `groups`: the count is after the last space; lines without a space (blank ones too) are
/// skipped. A count that is not a whole number refuses the body, naming the line.
pub(super) fn groups(body: &str, mut stacks: Stacks) -> Result<Stacks, String> {
    for (number, line) in lines(body) {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let what = |e: String| format!("line {number}: {e}");
        let value: u64 = count.parse().map_err(|_| {
            what(format!(
                "the count {count:?} after the last space is not a whole number of at least 0"
            ))
        })?;
        stacks.add(stack, value).map_err(what)?;
    }
    Ok(stacks)
}

/// `lines`: each non-empty line is a stack seen once.
pub(super) fn individual_lines(body: &str, mut stacks: Stacks) -> Result<Stacks, String> {
    for (number, line) in lines(body) {
        if !line.is_empty() {
            stacks
                .add(line, 1)
                .map_err(|e| format!("line {number}: {e}"))?;
        }
    }
    Ok(stacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_at_the_last_space_and_add_up() {
        let body = "foo;bar 1\r\nfoo;baz 2\n\nno-count\nfoo;bar +4\nspace in frame;x 3";
        let error = groups(body, Stacks::with_budget(10)).unwrap_err();
        assert!(
            error.starts_with("line 2: the decoded stacks would take more than 10"),
            "{error}"
        );
        let stacks = groups(body, Stacks::new()).unwrap();
        assert_eq!(
            stacks.sorted(),
            vec![
                ("foo;bar".into(), 5),
                ("foo;baz".into(), 2),
                ("space in frame;x".into(), 3)
            ]
        );
        let error = groups("a;b 1\na;c x\n", Stacks::new()).unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("\"x\""),
            "{error}"
        );
        assert!(
            groups("a;b -3", Stacks::new())
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            groups("a;b 10 ", Stacks::new()).is_err(),
            "an empty count after a trailing space"
        );
    }

    #[test]
    fn lines_count_each_line_once() {
        let stacks = individual_lines("a;b\na;b\r\n\na;c 5\n", Stacks::new()).unwrap();
        assert_eq!(
            stacks.sorted(),
            vec![("a;b".into(), 2), ("a;c 5".into(), 1)]
        );
    }
}
