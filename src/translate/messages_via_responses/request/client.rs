//! The client's Messages request as the mapper reads it: one pass over the body into borrowed
//! parts. Fields whose text goes upstream unchanged (texts, ids, names, schemas, tool inputs)
//! are spans of the body ([`RawValue`]); the mapper checks their JSON type where it matters,
//! so a wrong one gets a refusal that says what was expected. A field whose content depends on
//! the block's type (`source`, a tool result's `content`) is also kept as a span and read only
//! for the types that have it, so another block type's shape of it is never misread.
//!
//! Fields not named here are skipped unread (`model` is the relay's, `metadata` is read by the
//! inspect phase, the rest are hints the mapping table drops).

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::translate::json_text::StrOrList;

#[derive(Deserialize)]
pub struct Request<'a> {
    #[serde(borrow, default)]
    pub system: Option<StrOrList<'a, SystemBlock<'a>>>,
    #[serde(borrow, default)]
    pub messages: Option<Vec<Message<'a>>>,
    #[serde(borrow, default)]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(borrow, default)]
    pub tool_choice: Option<ToolChoice<'a>>,
    #[serde(borrow, default)]
    pub thinking: Option<Thinking<'a>>,
    #[serde(borrow, default)]
    pub output_config: Option<OutputConfig<'a>>,
    #[serde(borrow, default)]
    pub max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub temperature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub top_p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub stream: Option<&'a RawValue>,
    /// Content run by Anthropic (refused when present).
    #[serde(default)]
    pub mcp_servers: Option<IgnoredAny>,
    #[serde(default)]
    pub container: Option<IgnoredAny>,
}

#[derive(Deserialize)]
pub struct SystemBlock<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub text: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct Message<'a> {
    #[serde(borrow, default)]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub content: Option<StrOrList<'a, Block<'a>>>,
}

/// A content block of any type: each type uses some of these fields.
#[derive(Deserialize)]
pub struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// `text`.
    #[serde(borrow, default)]
    pub text: Option<&'a RawValue>,
    /// `image`, `document`: read by [`Source`].
    #[serde(borrow, default)]
    pub source: Option<&'a RawValue>,
    /// `document`.
    #[serde(borrow, default)]
    pub title: Option<&'a RawValue>,
    /// `tool_use`.
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub input: Option<&'a RawValue>,
    /// `tool_result`; its `content` is a string or a list of blocks, read as [`ToolContent`].
    #[serde(borrow, default)]
    pub tool_use_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub is_error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub content: Option<&'a RawValue>,
    /// `thinking`.
    #[serde(borrow, default)]
    pub thinking: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub signature: Option<&'a RawValue>,
}

/// A tool result's `content`.
pub type ToolContent<'a> = StrOrList<'a, Block<'a>>;

/// An image's or a document's `source`.
#[derive(Deserialize)]
pub struct Source<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub media_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub url: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct Tool<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub description: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct ToolChoice<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub disable_parallel_tool_use: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct Thinking<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub budget_tokens: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct OutputConfig<'a> {
    #[serde(borrow, default)]
    pub effort: Option<&'a RawValue>,
}
