//! The one error type of the binding: flat, every variant a sentence.

use xaeroflux::{
    ConversationError, ExportError, IdPrefixError, ImportError, IngestError, KeyError, NetError,
    NodeOpenError, OpenError, PublishError, QueryError, ReadError, SubscriptionError,
    SyncWithError, WriteError,
};

/// Every failure of the binding. Flat: each variant carries one `detail`, a sentence for a
/// person (it names the file, the address or the limit, and what to do), and the variant
/// itself is what code branches on. Nothing already stored is lost by any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum XfError {
    /// An argument does not parse or is out of bounds: an event id, a public key, an address,
    /// a kind, a filter over its limits.
    #[error("{detail}")]
    InvalidArgument {
        /// What and why.
        detail: String,
    },
    /// The node was closed: open it again.
    #[error("{detail}")]
    Closed {
        /// What was asked.
        detail: String,
    },
    /// Nothing matches what was named (a short event id that names no stored event).
    #[error("{detail}")]
    NotFound {
        /// What was looked for.
        detail: String,
    },
    /// The store is encrypted and no key provider or passphrase was given.
    #[error("{detail}")]
    KeyRequired {
        /// The data directory.
        detail: String,
    },
    /// The passphrase or the provider's key does not open the store. Nothing was changed.
    #[error("{detail}")]
    WrongKey {
        /// What refused it.
        detail: String,
    },
    /// The key provider failed, or the store's key was wrapped by another kind of provider,
    /// or its key file is damaged.
    #[error("{detail}")]
    KeyProvider {
        /// Why.
        detail: String,
    },
    /// Another node runs on this data directory (in this process or another).
    #[error("{detail}")]
    AlreadyRunning {
        /// The directory.
        detail: String,
    },
    /// The disk, or the store's map limit, is full. What was stored before stays stored.
    #[error("{detail}")]
    StoreFull {
        /// Why.
        detail: String,
    },
    /// Stored data, a key file or an import file is damaged, truncated or forged.
    #[error("{detail}")]
    Corrupt {
        /// What and where.
        detail: String,
    },
    /// The store could not be opened, read or written (permissions, I/O, a foreign
    /// directory, a store of a newer format).
    #[error("{detail}")]
    Storage {
        /// What failed.
        detail: String,
    },
    /// Publishing needs an identity: open the node with `create_identity`.
    #[error("{detail}")]
    NoIdentity {
        /// What was asked.
        detail: String,
    },
    /// An event was refused: out of bounds, or a deletion of another author's event.
    #[error("{detail}")]
    Rejected {
        /// Why.
        detail: String,
    },
    /// The node has no network: start it first.
    #[error("{detail}")]
    NoNetwork {
        /// What was asked.
        detail: String,
    },
    /// The network is paused: resume it first.
    #[error("{detail}")]
    Paused {
        /// What was asked.
        detail: String,
    },
    /// The network could not start, take a command (its queue is full: retry), or has
    /// stopped.
    #[error("{detail}")]
    Network {
        /// Why.
        detail: String,
    },
    /// A sync did not finish: the address could not be dialed, the peer failed or left.
    /// What either side stored stays stored; asking again moves only what is missing.
    #[error("{detail}")]
    SyncFailed {
        /// Why.
        detail: String,
    },
    /// No outcome in the time allowed; the work may still finish.
    #[error("{detail}")]
    Timeout {
        /// What, and how long was waited.
        detail: String,
    },
    /// A private conversation could not be read or written.
    #[error("{detail}")]
    Conversation {
        /// Why.
        detail: String,
    },
    /// This build of the library leaves out what was asked for (a cargo feature).
    #[error("{detail}")]
    Unsupported {
        /// What, and the feature that brings it.
        detail: String,
    },
    /// A callback of the host app failed or threw.
    #[error("{detail}")]
    Callback {
        /// What the host's runtime reported.
        detail: String,
    },
}

impl XfError {
    pub(crate) fn invalid(detail: impl Into<String>) -> XfError {
        XfError::InvalidArgument {
            detail: detail.into(),
        }
    }

    pub(crate) fn closed() -> XfError {
        XfError::Closed {
            detail: "the node is closed".into(),
        }
    }

    pub(crate) fn no_network() -> XfError {
        XfError::NoNetwork {
            detail: "this node has not started its network".into(),
        }
    }
}

/// A foreign callback that threw something other than an `XfError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for XfError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> XfError {
        XfError::Callback { detail: e.reason }
    }
}

impl From<KeyError> for XfError {
    fn from(e: KeyError) -> XfError {
        let detail = e.to_string();
        match e {
            KeyError::WrongKey => XfError::WrongKey { detail },
            KeyError::Malformed(_) => XfError::Corrupt { detail },
            KeyError::Io { .. } => XfError::Storage { detail },
            _ => XfError::KeyProvider { detail },
        }
    }
}

impl From<OpenError> for XfError {
    fn from(e: OpenError) -> XfError {
        let detail = e.to_string();
        match e {
            OpenError::KeyRequired { .. } => XfError::KeyRequired { detail },
            OpenError::WrongKey { .. } => XfError::WrongKey { detail },
            OpenError::Truncated { .. } => XfError::Corrupt { detail },
            _ => XfError::Storage { detail },
        }
    }
}

impl From<WriteError> for XfError {
    fn from(e: WriteError) -> XfError {
        let detail = e.to_string();
        match e {
            WriteError::Closed => XfError::Closed { detail },
            WriteError::DiskFull | WriteError::MapFullReadersBusy { .. } => {
                XfError::StoreFull { detail }
            }
            WriteError::BatchTooLarge { .. } | WriteError::RecordName { .. } => {
                XfError::InvalidArgument { detail }
            }
            WriteError::Corrupt(_) => XfError::Corrupt { detail },
            _ => XfError::Storage { detail },
        }
    }
}

impl From<ReadError> for XfError {
    fn from(e: ReadError) -> XfError {
        let detail = e.to_string();
        match e {
            ReadError::Unauthentic { .. }
            | ReadError::Corrupt(_)
            | ReadError::CorruptPage { .. } => XfError::Corrupt { detail },
            _ => XfError::Storage { detail },
        }
    }
}

impl From<QueryError> for XfError {
    fn from(e: QueryError) -> XfError {
        match e {
            QueryError::Read(e) => e.into(),
            e => XfError::invalid(e.to_string()),
        }
    }
}

impl From<NodeOpenError> for XfError {
    fn from(e: NodeOpenError) -> XfError {
        let detail = e.to_string();
        match e {
            NodeOpenError::Open(e) => e.into(),
            NodeOpenError::Key(e) => e.into(),
            NodeOpenError::Net(e) => e.into(),
            NodeOpenError::KeyRequired { .. } => XfError::KeyRequired { detail },
            NodeOpenError::AlreadyRunning { .. } => XfError::AlreadyRunning { detail },
            NodeOpenError::NetworkRunning => XfError::Network { detail },
            NodeOpenError::Identity(_) => XfError::KeyProvider { detail },
            _ => XfError::Storage { detail },
        }
    }
}

impl From<PublishError> for XfError {
    fn from(e: PublishError) -> XfError {
        let detail = e.to_string();
        match e {
            PublishError::NoIdentity => XfError::NoIdentity { detail },
            PublishError::Write(e) => e.into(),
            PublishError::Read(e) => e.into(),
            _ => XfError::Rejected { detail },
        }
    }
}

impl From<NetError> for XfError {
    fn from(e: NetError) -> XfError {
        let detail = e.to_string();
        match e {
            NetError::Config(_) | NetError::Listen(..) => XfError::InvalidArgument { detail },
            _ => XfError::Network { detail },
        }
    }
}

impl From<SyncWithError> for XfError {
    fn from(e: SyncWithError) -> XfError {
        let detail = e.to_string();
        match e {
            SyncWithError::AuthorsScope | SyncWithError::EmptyWindow => {
                XfError::InvalidArgument { detail }
            }
            SyncWithError::NoNetwork => XfError::NoNetwork { detail },
            SyncWithError::Paused => XfError::Paused { detail },
            SyncWithError::Timeout { .. } => XfError::Timeout { detail },
            SyncWithError::Stopped | SyncWithError::Busy => XfError::Network { detail },
            _ => XfError::SyncFailed { detail },
        }
    }
}

impl From<ConversationError> for XfError {
    fn from(e: ConversationError) -> XfError {
        let detail = e.to_string();
        match e {
            ConversationError::NoIdentity => XfError::NoIdentity { detail },
            ConversationError::Read(e) => e.into(),
            ConversationError::Write(e) => e.into(),
            _ => XfError::Conversation { detail },
        }
    }
}

impl From<ImportError> for XfError {
    fn from(e: ImportError) -> XfError {
        let detail = e.to_string();
        match e {
            ImportError::Io(_) => XfError::Storage { detail },
            _ => XfError::Corrupt { detail },
        }
    }
}

impl From<IngestError> for XfError {
    fn from(e: IngestError) -> XfError {
        match e {
            IngestError::Write(e) => e.into(),
            IngestError::Import(e) => e.into(),
            e => XfError::Storage {
                detail: e.to_string(),
            },
        }
    }
}

impl From<ExportError> for XfError {
    fn from(e: ExportError) -> XfError {
        match e {
            ExportError::Read(e) => e.into(),
            e => XfError::Storage {
                detail: e.to_string(),
            },
        }
    }
}

impl From<IdPrefixError> for XfError {
    fn from(e: IdPrefixError) -> XfError {
        let detail = e.to_string();
        match e {
            IdPrefixError::NotFound(_) => XfError::NotFound { detail },
            IdPrefixError::Read(e) => e.into(),
            _ => XfError::InvalidArgument { detail },
        }
    }
}

impl From<SubscriptionError> for XfError {
    fn from(e: SubscriptionError) -> XfError {
        match e {
            SubscriptionError::Read(e) => e.into(),
            e => XfError::Closed {
                detail: e.to_string(),
            },
        }
    }
}
