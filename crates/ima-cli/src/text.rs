//! Wording shared by the commands' messages.

/// `n` followed by the singular or the plural noun: "1 entry", "0 entries", "2 entries".
pub fn count<N>(n: N, one: &str, many: &str) -> String
where
    N: Copy + PartialEq + From<u8> + std::fmt::Display,
{
    format!("{n} {}", if n == N::from(1) { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular() {
        assert_eq!(count(0usize, "rule", "rules"), "0 rules");
        assert_eq!(count(1usize, "entry", "entries"), "1 entry");
        assert_eq!(count(2u64, "error", "errors"), "2 errors");
    }
}
