//! Splitting a reply for the Send API, which takes at most 1000 UTF-8 bytes of text per message.

/// Meta's limit (bytes, not characters: META.md §4.4).
pub const MAX_CHUNK_BYTES: usize = 1000;

/// Splits `text` into chunks of at most `max` bytes, never inside a character, preferring to break after
/// a newline or a space in the second half of the window so words stay whole. Blank chunks are dropped.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.len() <= max {
            chunks.push(rest.to_owned());
            break;
        }
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let window = &rest[..end];
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .filter(|&i| i >= end / 2)
            .map(|i| i + 1)
            .unwrap_or(end);
        let (chunk, tail) = rest.split_at(cut);
        let chunk = chunk.trim_end();
        if !chunk.is_empty() {
            chunks.push(chunk.to_owned());
        }
        rest = tail.trim_start();
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split("hello", 1000), ["hello"]);
        assert!(split("   ", 1000).is_empty());
    }

    #[test]
    fn long_text_splits_at_spaces_under_the_byte_limit_and_keeps_every_word() {
        let text = "word ".repeat(700);
        let chunks = split(&text, 1000);
        assert!(chunks.len() >= 4);
        assert!(chunks.iter().all(|c| c.len() <= 1000 && !c.is_empty()));
        assert_eq!(chunks.join(" "), text.trim());
    }

    #[test]
    fn multibyte_characters_are_never_cut() {
        let text = "é".repeat(1500) + &"😀".repeat(400);
        let chunks = split(&text, 1000);
        assert!(chunks.iter().all(|c| c.len() <= 1000));
        assert_eq!(chunks.concat(), text);
    }
}
