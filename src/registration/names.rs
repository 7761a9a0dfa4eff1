//! Display names that could spoof a consent screen (F-11): bidirectional controls that
//! reorder what is shown, control and invisible characters, words mixing look-alike
//! scripts, and names that fold to a known client's name once look-alike characters are
//! read as the Latin letters they imitate ("Clаude" with a Cyrillic а).
//!
//! Pure. The folding is a deliberately small table — the Cyrillic, Greek and fullwidth
//! letters that render like Latin ones in common fonts, plus case and spacing — not the
//! whole of Unicode's confusables list: it catches the names an impersonator types, and a
//! near miss costs one step-up.

/// What a name contains that a person reading a consent screen would not see as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameFlags {
    /// A bidirectional override, embedding, isolate or mark (U+202A–E, U+2066–9, U+200E/F,
    /// U+061C): the text shown is not the text stored.
    pub bidi_control: bool,
    /// A control character (NUL, escapes, line breaks…).
    pub control: bool,
    /// A character that renders as nothing: zero-width spaces and joiners, word joiner,
    /// byte-order mark, soft hyphen, invisible separators.
    pub invisible: bool,
    /// A word whose letters come from more than one of Latin, Cyrillic, Greek and Armenian.
    pub mixed_scripts: bool,
}

pub fn flags(name: &str) -> NameFlags {
    NameFlags {
        bidi_control: name.chars().any(is_bidi_control),
        control: name.chars().any(char::is_control),
        invisible: name.chars().any(is_invisible),
        mixed_scripts: name
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| scripts_in(word).count_ones() > 1),
    }
}

pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}' | '\u{3164}' | '\u{115F}' | '\u{1160}'
    )
}

/// The scripts of a word's letters, one bit each: Latin, Cyrillic, Greek, Armenian.
fn scripts_in(word: &str) -> u8 {
    word.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '\u{00C0}'..='\u{024F}' => 1,
            '\u{0400}'..='\u{052F}' => 2,
            '\u{0370}'..='\u{03FF}' => 4,
            '\u{0530}'..='\u{058F}' => 8,
            _ => 0,
        })
        .fold(0, |scripts, script| scripts | script)
}

/// `name` as it reads: look-alike letters as the Latin ones they imitate, lower case,
/// without spaces, punctuation, controls or invisible characters.
pub fn skeleton(name: &str) -> String {
    name.chars()
        .map(fold_fullwidth)
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .map(latin_look_alike)
        .collect()
}

/// Whether `name` imitates `known`: the same once look-alikes are folded, but not the same
/// name in another case or spacing — which would be no disguise at all.
pub fn imitates(name: &str, known: &str) -> bool {
    Folded::of(name).imitates(&Folded::of(known))
}

/// A name folded both ways `imitates` compares, computed once: for a known name when the
/// policies load, for a registration's name once per decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    pub name: String,
    skeleton: String,
    plain: String,
}

impl Folded {
    pub fn of(name: &str) -> Folded {
        Folded {
            name: name.to_owned(),
            skeleton: skeleton(name),
            plain: name
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect(),
        }
    }

    /// Whether this name imitates `known` (see [`imitates`]).
    pub fn imitates(&self, known: &Folded) -> bool {
        !self.skeleton.is_empty() && self.skeleton == known.skeleton && self.plain != known.plain
    }
}

/// Fullwidth ASCII (U+FF01–FF5E) as ASCII.
fn fold_fullwidth(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// A lower-case Cyrillic, Greek or Armenian letter that renders like a Latin one, as that
/// Latin letter; digits that pass for letters, too.
fn latin_look_alike(c: char) -> char {
    match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'ε' => 'e',
        'һ' | 'η' => 'h',
        'і' | 'ї' | 'ι' | 'ӏ' | 'l' | '1' | '|' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'о' | 'ο' | 'օ' | '0' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ս' => 'u',
        'ν' => 'v',
        'ԝ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'ᴢ' => 'z',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deceptive_characters_are_named() {
        assert!(flags("Claude\u{202E}edualC").bidi_control);
        assert!(flags("Claude\u{0}").control);
        assert!(flags("Cla\u{200B}ude").invisible);
        assert!(
            flags("Cl\u{0430}ude").mixed_scripts,
            "a Cyrillic а in a Latin word"
        );
        assert_eq!(flags("Claude Code"), NameFlags::default());
        assert_eq!(
            flags("日本語 Client"),
            NameFlags::default(),
            "scripts in separate words"
        );
        assert!(flags("Ωmega Tool").mixed_scripts, "Greek Ω in a Latin word");
        assert!(!flags("Привет App").mixed_scripts);
    }

    #[test]
    fn look_alikes_fold_to_the_name_they_imitate() {
        assert!(imitates("Cl\u{0430}ude", "Claude"), "Cyrillic а");
        assert!(imitates("C\u{FF4C}aude", "Claude"), "fullwidth l");
        assert!(
            !imitates("Chat GPT", "ChatGPT"),
            "spacing alone is no disguise"
        );
        assert!(!imitates("ChatGPT", "ChatGPT"), "the name itself");
        assert!(
            !imitates("claude code", "Claude Code"),
            "case alone is no disguise"
        );
        assert!(
            imitates("C1aude Code", "Claude Code"),
            "a digit one for an l"
        );
        assert!(
            !imitates("Cla\u{200B}ude", "Claude"),
            "an invisible character is flagged as such, not as a look-alike"
        );
        assert!(!imitates("Cloud", "Claude"));
        assert!(!imitates("", "Claude"));
    }
}
