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

/// Splits `text` like [`split`], into at most `max_chunks` chunks: a longer text is cut, at the end of
/// the last sentence that fits (when it is in the last chunk's second half), else at the word boundary
/// [`split`] chose. Returns the chunks and whether anything was cut.
pub fn split_at_most(text: &str, max: usize, max_chunks: usize) -> (Vec<String>, bool) {
    let mut chunks = split(text, max);
    if chunks.len() <= max_chunks {
        return (chunks, false);
    }
    chunks.truncate(max_chunks.max(1));
    if let Some(last) = chunks.last_mut() {
        let end = last
            .char_indices()
            .filter(|&(i, c)| {
                matches!(c, '.' | '!' | '?' | '…')
                    && last[i + c.len_utf8()..].starts_with(char::is_whitespace)
            })
            .map(|(i, c)| i + c.len_utf8())
            .next_back()
            .filter(|&end| end >= last.len() / 2);
        if let Some(end) = end {
            last.truncate(end);
        }
    }
    (chunks, true)
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
    fn a_long_answer_is_cut_to_the_chunk_limit_at_a_sentence_end() {
        let sentence = "Our blue sneakers come in sizes 38 to 46. ";
        let text = sentence.repeat(200);
        let (chunks, cut) = split_at_most(&text, 1000, 3);
        assert!(cut);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.len() <= 1000));
        assert!(
            chunks[2].ends_with("46."),
            "{:?}",
            &chunks[2][chunks[2].len() - 20..]
        );
        let (short, cut) = split_at_most("Hello there.", 1000, 3);
        assert_eq!((short, cut), (vec!["Hello there.".to_owned()], false));
        // No sentence end in reach: the word boundary stands, and characters stay whole.
        let (words, _) = split_at_most(&"héllo ".repeat(1000), 1000, 2);
        assert!(words.len() == 2 && words[1].ends_with("héllo"));
    }

    #[test]
    fn multibyte_characters_are_never_cut() {
        let text = "é".repeat(1500) + &"😀".repeat(400);
        let chunks = split(&text, 1000);
        assert!(chunks.iter().all(|c| c.len() <= 1000));
        assert_eq!(chunks.concat(), text);
    }
}
