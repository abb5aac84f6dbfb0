//! Where in a policy file an error is: 1-based line and column of a byte
//! offset, as editors count them.

/// `(line, column)` of `offset` in `text`; the end when past it.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn offsets_become_lines_and_columns() {
        let t = "ab\ncd\n\nxyz";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 1), (1, 2));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 7), (4, 1));
        assert_eq!(line_col(t, 9), (4, 3));
        assert_eq!(line_col(t, 99), (4, 4));
    }
}
