//! The chat model that writes `POST /ask` answers (`LLM_BASE_URL` + `CHAT_MODEL`): one chat completion per question,
//! with the pinned prompt `prompts/ask.txt` giving the retrieved chunks as numbered contexts.
//!
//! Requests go through the embedder's single-attempt async-openai transport ([`openai_client`]): no hidden retries,
//! and a failure is the caller's to see. A failure or an unusable reply is a 502, no complete answer in time a 504;
//! there is no fallback to the extractive answer, so a client always knows which kind of answer it got.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestUserMessage, ChatCompletionResponseStream,
    CreateChatCompletionRequest, FinishReason,
};
use dossier_actors::embed::{describe_openai_error, openai_client};
use futures::{Stream, StreamExt};
use secrecy::SecretString;

use crate::api::error::ApiError;
use crate::eval::prompt::{numbered, render};

/// The prompt: placeholders `contexts` (numbered `[n] text`) and `question`.
pub const ASK_PROMPT: &str = include_str!("prompts/ask.txt");

/// A chat model behind an OpenAI-compatible endpoint.
pub struct ChatModel {
    client: Client<OpenAIConfig>,
    model: String,
    timeout: Duration,
}

impl ChatModel {
    /// A client for `model` at `base_url`; sends nothing. Fails on a base URL that is not http(s) or a zero timeout.
    pub fn new(base_url: &str, api_key: Option<&SecretString>, model: &str, timeout: Duration) -> Result<Self, String> {
        let model = model.trim().to_owned();
        if model.is_empty() {
            return Err("CHAT_MODEL is empty".to_owned());
        }
        let (_, client) =
            openai_client(base_url, api_key, timeout).map_err(|reason| format!("CHAT_MODEL: {reason}"))?;
        Ok(Self { client, model, timeout })
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The whole answer to `question` from `contexts` (numbered from 1 in this order).
    pub async fn answer(&self, question: &str, contexts: &[String]) -> Result<String, ApiError> {
        let response = self.client.chat().create(self.request(question, contexts)).await.map_err(|e| self.failed(e))?;
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(self.unusable("the reply has no choices"));
        };
        if choice.finish_reason == Some(FinishReason::Length) {
            return Err(self.unusable("the reply was cut off by the token limit (finish_reason: length)"));
        }
        let content = choice.message.content.unwrap_or_default();
        if content.trim().is_empty() {
            return Err(self.unusable("the reply has no content"));
        }
        Ok(content.trim().to_owned())
    }

    /// The answer as it is generated: the request is sent (and its failure returned) before the stream is; each item
    /// is a piece of the answer, or the failure that ended it.
    pub async fn answer_stream(
        &self,
        question: &str,
        contexts: &[String],
    ) -> Result<impl Stream<Item = Result<String, ApiError>> + Send + 'static, ApiError> {
        let stream: ChatCompletionResponseStream =
            self.client.chat().create_stream(self.request(question, contexts)).await.map_err(|e| self.failed(e))?;
        let (model, timeout) = (self.model.clone(), self.timeout);
        Ok(stream.filter_map(move |item| {
            let piece = match item {
                Ok(chunk) => {
                    let choice = chunk.choices.into_iter().next();
                    match choice {
                        Some(choice) if choice.finish_reason == Some(FinishReason::Length) => {
                            Some(Err(unusable(&model, "the reply was cut off by the token limit")))
                        }
                        Some(choice) => choice.delta.content.filter(|text| !text.is_empty()).map(Ok),
                        None => None,
                    }
                }
                Err(error) => Some(Err(failed(&model, timeout, error))),
            };
            std::future::ready(piece)
        }))
    }

    fn request(&self, question: &str, contexts: &[String]) -> CreateChatCompletionRequest {
        let prompt = prompt(question, contexts);
        CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: vec![ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(prompt))],
            temperature: Some(0.0),
            ..CreateChatCompletionRequest::default()
        }
    }

    fn failed(&self, error: OpenAIError) -> ApiError {
        failed(&self.model, self.timeout, error)
    }

    fn unusable(&self, reason: &str) -> ApiError {
        unusable(&self.model, reason)
    }
}

/// The prompt for `question` over `contexts`.
pub fn prompt(question: &str, contexts: &[String]) -> String {
    let contexts = numbered(contexts);
    render(ASK_PROMPT.trim_end(), &[("contexts", contexts.as_str()), ("question", question)])
}

fn failed(model: &str, timeout: Duration, error: OpenAIError) -> ApiError {
    let timed_out = matches!(&error, OpenAIError::Reqwest(inner) if inner.is_timeout());
    let reason = describe_openai_error(&error);
    tracing::warn!(model, error = %reason, timed_out, "chat_request_failed");
    if timed_out {
        ApiError::GatewayTimeout(format!("chat model `{model}` gave no complete answer within {timeout:?}"))
    } else {
        ApiError::BadGateway(format!("chat model `{model}` failed: {reason}"))
    }
}

fn unusable(model: &str, reason: &str) -> ApiError {
    tracing::warn!(model, reason, "chat_reply_unusable");
    ApiError::BadGateway(format!("chat model `{model}`: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_numbers_the_contexts_and_fills_the_question_once() {
        let prompt = prompt("what is {{contexts}}?", &["first".to_owned(), "second".to_owned()]);
        assert!(prompt.contains("[1] first\n\n[2] second"), "{prompt}");
        assert!(prompt.contains("Question: what is {{contexts}}?"), "{prompt}");
    }
}
