//! A given/when/then harness in the style of cqrs-es: `given(past events).when(command).then_expect(new events)`.

use crate::document::{DocumentCommand, DocumentError, DocumentEvent, DocumentState, decide, replay};

/// The document's history before the command.
pub(super) fn given(events: impl IntoIterator<Item = DocumentEvent>) -> Given {
    let events: Vec<DocumentEvent> = events.into_iter().collect();
    Given { state: replay(&events) }
}

/// A document whose history is known.
pub(super) struct Given {
    state: DocumentState,
}

impl Given {
    /// Decides `command` against the history.
    pub(super) fn when(self, command: DocumentCommand) -> Then {
        let description = format!("{command:?}");
        Then { result: decide(&self.state, command), command: description }
    }
}

/// What `decide` returned.
pub(super) struct Then {
    command: String,
    result: Result<Vec<DocumentEvent>, DocumentError>,
}

impl Then {
    /// The command was accepted and caused exactly these events.
    #[track_caller]
    pub(super) fn then_expect(self, expected: impl IntoIterator<Item = DocumentEvent>) {
        let expected: Vec<DocumentEvent> = expected.into_iter().collect();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "unexpected events for {}", self.command),
            Err(error) => panic!("{} was refused ({error}); expected {expected:?}", self.command),
        }
    }

    /// The command was refused with an error that `matches` accepts.
    #[track_caller]
    pub(super) fn then_error(self, matches: impl FnOnce(&DocumentError) -> bool) {
        match self.result {
            Ok(events) => panic!("{} was accepted with {events:?}; expected an error", self.command),
            Err(error) => {
                assert!(matches(&error), "{} was refused with an unexpected error: {error:?}", self.command);
                assert_readable(&error);
            }
        }
    }

    /// The command was refused with exactly this error.
    #[track_caller]
    pub(super) fn then_error_eq(self, expected: DocumentError) {
        match self.result {
            Ok(events) => panic!("{} was accepted with {events:?}; expected {expected:?}", self.command),
            Err(error) => {
                assert_eq!(error, expected, "{} was refused with an unexpected error", self.command);
                assert_readable(&error);
            }
        }
    }
}

/// A refusal must explain itself in a sentence a user can read, not in a debug dump.
#[track_caller]
fn assert_readable(error: &DocumentError) {
    let message = error.to_string();
    assert!(message.len() > 12 && !message.contains("Some(") && !message.contains('{'), "unreadable: {message}");
}
