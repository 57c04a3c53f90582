//! Redis-style glob matching (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, `\x` escapes.

/// Returns true if `text` matches `pattern`; `nocase` folds ASCII case.
///
/// Iterative with one backtrack point (the last `*`), so any pattern costs at most
/// O(pattern × text): a hostile `*a*a*a*...*b` can't stall the node as the naive recursive
/// matcher would.
pub fn matches(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    // As Redis's `stringmatchlen`: an empty text matches only an empty pattern (`KEYS *`
    // and `SCAN` without MATCH list the empty key without consulting the pattern).
    if text.is_empty() {
        return pattern.is_empty();
    }
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < text.len() {
        if pi < pattern.len() {
            if pattern[pi] == b'*' {
                while pi < pattern.len() && pattern[pi] == b'*' {
                    pi += 1;
                }
                if pi == pattern.len() {
                    return true;
                }
                star = Some((pi, ti));
                continue;
            }
            let (matched, width) = token(&pattern[pi..], text[ti], nocase);
            if matched {
                pi += width;
                ti += 1;
                continue;
            }
        }
        match star {
            Some((after_star, from)) => {
                pi = after_star;
                ti = from + 1;
                star = Some((after_star, from + 1));
            }
            None => return false,
        }
    }
    pattern[pi..].iter().all(|&c| c == b'*')
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// Matches one pattern token (not `*`) against `c`. Returns whether it matched and the token's
/// width in the pattern.
fn token(p: &[u8], c: u8, nocase: bool) -> (bool, usize) {
    match p[0] {
        b'?' => (true, 1),
        b'\\' if p.len() >= 2 => (eq(p[1], c, nocase), 2),
        b'[' => {
            let negate = p.get(1) == Some(&b'^');
            let mut i = if negate { 2 } else { 1 };
            let mut found = false;
            while i < p.len() && p[i] != b']' {
                if p[i] == b'\\' && i + 1 < p.len() {
                    found |= eq(p[i + 1], c, nocase);
                    i += 2;
                } else if p.get(i + 1) == Some(&b'-') && i + 2 < p.len() {
                    let (mut lo, mut hi) = (p[i], p[i + 2]);
                    if lo > hi {
                        std::mem::swap(&mut lo, &mut hi);
                    }
                    let c2 = if nocase { c.to_ascii_lowercase() } else { c };
                    let (lo, hi) = if nocase {
                        (lo.to_ascii_lowercase(), hi.to_ascii_lowercase())
                    } else {
                        (lo, hi)
                    };
                    found |= (lo..=hi).contains(&c2);
                    i += 3;
                } else {
                    found |= eq(p[i], c, nocase);
                    i += 1;
                }
            }
            // An unterminated class ends with the pattern, as in Redis.
            (found != negate, (i + 1).min(p.len()))
        }
        other => (eq(other, c, nocase), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_like_redis() {
        let yes: &[(&str, &str)] = &[
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("user:*:name", "user:42:name"),
            ("a\\*b", "a*b"),
            ("*a*b*c*", "xxaxxbxxc"),
        ];
        let no: &[(&str, &str)] = &[
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("a\\*b", "axb"),
            ("abc", "abcd"),
            ("*", ""),
            ("**", ""),
            ("h[a-]llo", "h-llo"),
            (
                "*a*b*c*d*e*f*g*h*i*j*k*",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ),
        ];
        for (p, t) in yes {
            assert!(matches(p.as_bytes(), t.as_bytes(), false), "{p} vs {t}");
        }
        for (p, t) in no {
            assert!(!matches(p.as_bytes(), t.as_bytes(), false), "{p} vs {t}");
        }
        assert!(matches(b"MAXMEM*", b"maxmemory", true));
        let hostile = "*a".repeat(50) + "b";
        assert!(!matches(
            hostile.as_bytes(),
            "a".repeat(5000).as_bytes(),
            false
        ));
    }
}
