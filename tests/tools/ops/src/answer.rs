//! An answer of the report server to one request (status, content type, body, and where a
//! redirect leads), whichever part of it answers: the reports on demand (`serve`) or the kept
//! ones (`keeper`).

/// An answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Where a redirect leads.
    pub location: Option<String>,
}

impl Answer {
    pub fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            location: None,
        }
    }

    pub fn html(body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into(),
            location: None,
        }
    }

    /// `303 See Other` to `location`.
    pub fn see_other(location: String) -> Answer {
        Answer {
            location: Some(location),
            ..Answer::text(303, "")
        }
    }
}
