//! The Responses request body the mapper writes: typed parts serialised once, strings of the
//! client's body carried as [`Text`] spans.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::translate::json_text::Text;

#[derive(Serialize)]
pub struct Body<'a> {
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Text<'a>>,
    pub input: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<FunctionTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Choice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// As the client wrote the number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<&'a RawValue>,
    pub stream: bool,
    pub store: bool,
}

/// An input item.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item<'a> {
    Message {
        role: &'static str,
        content: Vec<Part<'a>>,
    },
    FunctionCall {
        call_id: Text<'a>,
        name: Text<'a>,
        arguments: Text<'a>,
    },
    FunctionCallOutput {
        call_id: Text<'a>,
        output: Output<'a>,
    },
    Reasoning {
        summary: Vec<Summary<'a>>,
        encrypted_content: Text<'a>,
    },
}

/// A content part of a message or of a tool output.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part<'a> {
    InputText {
        text: Text<'a>,
    },
    OutputText {
        text: Text<'a>,
    },
    InputImage {
        image_url: Text<'a>,
    },
    InputFile {
        filename: Text<'a>,
        file_data: Text<'a>,
    },
}

impl Part<'_> {
    pub fn is_text(&self) -> bool {
        matches!(self, Part::InputText { .. } | Part::OutputText { .. })
    }
}

/// A tool output: one string, or parts when it has images.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Output<'a> {
    Text(Text<'a>),
    Parts(Vec<Part<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "summary_text")]
pub struct Summary<'a> {
    pub text: Text<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "function")]
pub struct FunctionTool<'a> {
    pub name: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Text<'a>>,
    pub parameters: Schema<'a>,
    pub strict: bool,
}

/// A tool's parameters: the client's `input_schema` as it came, or any object.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Schema<'a> {
    Given(&'a RawValue),
    AnyObject(AnyObject),
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "object")]
pub struct AnyObject {}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Choice<'a> {
    /// `auto`, `required`, `none`.
    Mode(&'static str),
    Function(FunctionChoice<'a>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "function")]
pub struct FunctionChoice<'a> {
    pub name: Text<'a>,
}

#[derive(Serialize, Default)]
pub struct Reasoning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<&'static str>,
}
