//! Strings of a client's JSON body carried into an upstream body without a round trip through
//! `String`s: a request mapper reads the client's texts (messages, tool results, schemas, ids) as
//! spans of the body's JSON text ([`RawValue`]) and writes them back as they came. A text is
//! scanned once, when the body is read; it is neither unescaped nor escaped again.
//!
//! A literal from a body serde_json has read is valid JSON, so a span of it written unchanged,
//! or a join of whole string literals' contents, is valid JSON too; [`Text::joined`] still has
//! serde_json check what it builds, so a mistake here cannot send malformed JSON upstream.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON string for an upstream body.
#[derive(Debug)]
pub enum Text<'a> {
    /// A string literal of the client's body (quotes included), written as it came.
    Literal(&'a RawValue),
    /// A string literal built here from parts of literals.
    Joined(Box<RawValue>),
    /// Plain text, escaped when written.
    Plain(Cow<'a, str>),
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Text::Literal(raw) => raw.serialize(serializer),
            Text::Joined(raw) => raw.serialize(serializer),
            Text::Plain(text) => serializer.serialize_str(text),
        }
    }
}

impl<'a> Text<'a> {
    /// `raw` when it is a string literal.
    pub fn literal(raw: &'a RawValue) -> Option<Self> {
        is_string(raw).then_some(Text::Literal(raw))
    }

    /// One string: `prefix`, then the contents of `literals` set apart by `separator`.
    /// `prefix` and `separator` are plain text (escaped here); `literals` must be string
    /// literals. A single literal without a prefix is kept as it is.
    pub fn joined(prefix: &str, literals: &[&'a RawValue], separator: &str) -> Self {
        if let ([only], "") = (literals, prefix) {
            return Text::Literal(only);
        }
        let contents: usize = literals.iter().map(|l| inner(l).len()).sum();
        let mut json = String::with_capacity(contents + prefix.len() + 2 + 8 * literals.len());
        json.push('"');
        push_escaped(&mut json, prefix);
        for (i, literal) in literals.iter().enumerate() {
            if i > 0 {
                push_escaped(&mut json, separator);
            }
            json.push_str(inner(literal));
        }
        json.push('"');
        match RawValue::from_string(json) {
            Ok(raw) => Text::Joined(raw),
            // Not reached: the parts are whole literals' contents and escaped text. Should it
            // be, the same string is built the slow way.
            Err(_) => {
                let mut plain = prefix.to_owned();
                for (i, literal) in literals.iter().enumerate() {
                    if i > 0 {
                        plain.push_str(separator);
                    }
                    plain.push_str(&decoded(literal));
                }
                Text::Plain(Cow::Owned(plain))
            }
        }
    }

    /// Whether the text is the empty string.
    pub fn is_empty(&self) -> bool {
        match self {
            Text::Literal(raw) => raw.get() == "\"\"",
            Text::Joined(raw) => raw.get() == "\"\"",
            Text::Plain(text) => text.is_empty(),
        }
    }

    /// Whether the text is empty or only white space (as `str::trim` sees it).
    pub fn is_blank(&self) -> bool {
        match self {
            Text::Literal(raw) => literal_is_blank(raw),
            Text::Joined(raw) => literal_is_blank(raw),
            Text::Plain(text) => text.trim().is_empty(),
        }
    }
}

/// Whether `raw` is a JSON string literal.
pub fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

/// A string literal's contents as written (escapes kept), without its quotes.
fn inner(literal: &RawValue) -> &str {
    let text = literal.get();
    text.get(1..text.len().saturating_sub(1)).unwrap_or("")
}

/// A string literal's text: borrowed from the body when it has no escapes.
pub fn decoded(literal: &RawValue) -> Cow<'_, str> {
    let contents = inner(literal);
    if !contents.contains('\\') {
        return Cow::Borrowed(contents);
    }
    serde_json::from_str::<String>(literal.get()).map_or(Cow::Borrowed(contents), Cow::Owned)
}

/// Whether a string literal is empty or white space, deciding from its first characters when
/// they tell (JSON has no raw control characters in a string, so an unescaped ASCII character
/// other than a space is text).
fn literal_is_blank(literal: &RawValue) -> bool {
    match inner(literal).trim_start_matches(' ').bytes().next() {
        None => true,
        Some(b) if b.is_ascii() && b != b'\\' => false,
        Some(_) => decoded(literal).trim().is_empty(),
    }
}

fn push_escaped(json: &mut String, text: &str) {
    // serde_json writes a &str as a quoted, escaped literal; its contents are what is wanted.
    let quoted = serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""));
    json.push_str(&quoted[1..quoted.len() - 1]);
}

/// A field that is either a string or a list (Anthropic's `system` and `content`): read in one
/// pass, without the buffering of an untagged enum.
#[derive(Debug)]
pub enum StrOrList<'a, T> {
    Str(Cow<'a, str>),
    List(Vec<T>),
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for StrOrList<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either<'a, T>(PhantomData<(&'a (), T)>);

        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for Either<'a, T> {
            type Value = StrOrList<'a, T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of blocks")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrList::Str(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(StrOrList::Str(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(StrOrList::Str(Cow::Owned(text)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The hint is the client's; it sizes the list only up to a bound.
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    list.push(item);
                }
                Ok(StrOrList::List(list))
            }
        }

        deserializer.deserialize_any(Either(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn written(text: &Text<'_>) -> String {
        serde_json::to_string(text).unwrap()
    }

    #[test]
    fn a_literal_is_written_as_it_came() {
        let literal = raw(r#""caf\u00e9 \"x\"""#);
        let text = Text::literal(&literal).unwrap();
        assert_eq!(written(&text), r#""caf\u00e9 \"x\"""#);
        assert!(Text::literal(&raw("5")).is_none());
    }

    #[test]
    fn joined_literals_read_back_as_the_joined_texts() {
        let (a, b) = (raw(r#""one \"q\"""#), raw(r#""two\nlines""#));
        let text = Text::joined("Error: \"", &[&a, &b], "\n\n");
        let back: String = serde_json::from_str(&written(&text)).unwrap();
        assert_eq!(back, "Error: \"one \"q\"\n\ntwo\nlines");
        let none = Text::joined("", &[], "\n");
        assert_eq!(written(&none), r#""""#);
        assert!(matches!(Text::joined("", &[&a], "x"), Text::Literal(_)));
    }

    #[test]
    fn blank_is_what_trim_calls_empty() {
        for (json, blank) in [
            (r#""""#, true),
            (r#""   ""#, true),
            (r#""\n\t \r""#, true),
            (r#""\u2003""#, true),
            (r#"" a""#, false),
            (r#""\nx""#, false),
            (r#""é""#, false),
        ] {
            assert_eq!(
                Text::literal(&raw(json)).unwrap().is_blank(),
                blank,
                "{json}"
            );
        }
    }

    #[test]
    fn decoded_borrows_unless_escaped() {
        let plain = raw(r#""abc""#);
        assert!(matches!(decoded(&plain), Cow::Borrowed("abc")));
        assert_eq!(decoded(&raw(r#""a\/b""#)), "a/b");
    }

    #[test]
    fn str_or_list_reads_either_and_names_what_it_expected() {
        let text: StrOrList<'_, u8> = serde_json::from_str(r#""hi""#).unwrap();
        assert!(matches!(text, StrOrList::Str(Cow::Borrowed("hi"))));
        let escaped: StrOrList<'_, u8> = serde_json::from_str(r#""h\ti""#).unwrap();
        assert!(matches!(escaped, StrOrList::Str(Cow::Owned(ref s)) if s == "h\ti"));
        let list: StrOrList<'_, u8> = serde_json::from_str("[1,2]").unwrap();
        assert!(matches!(list, StrOrList::List(ref l) if l == &[1, 2]));
        let wrong = serde_json::from_str::<StrOrList<'_, u8>>("{}").unwrap_err();
        assert!(wrong.to_string().contains("a string or a list of blocks"));
    }
}
