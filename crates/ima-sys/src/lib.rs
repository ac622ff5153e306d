//! The system side of ima: everything that makes a syscall lives here, behind safe APIs, so
//! that `ima-core` stays pure. See `ARCHITECTURE.md` for the unsafe policy: this crate may
//! allow `unsafe` per module, each with a `// SAFETY:` comment on every block.

pub mod audit;
pub mod fanotify;
pub mod file;
pub mod fs;
pub mod inode;
pub mod map;
pub mod procfs;
pub mod signal;
pub mod statedir;
pub mod walk;
pub mod xattr;
