//! Where a client asks for one repository: a registry's base URL and the
//! repository's path there (after a mirror's prefix or a push's mapping).

use std::fmt;

/// Where to ask for one repository: a base URL and the repository path there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `scheme://host[:port]`, without a trailing slash.
    pub base_url: String,
    /// The repository path on that endpoint, after prefix and flattening.
    pub repository: String,
    /// Whether this is the upstream host itself rather than a mirror.
    pub upstream: bool,
    /// How long a connection to it may take to open, if not the client's.
    pub connect_timeout: Option<std::time::Duration>,
}

impl Endpoint {
    /// Plain HTTP: no transport security.
    pub fn insecure(&self) -> bool {
        self.base_url.starts_with("http://")
    }

    /// The host[:port] part of the base URL.
    pub fn host(&self) -> &str {
        self.base_url
            .split_once("://")
            .map_or(&*self.base_url, |(_, h)| h)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base_url, self.repository)
    }
}
