//! What differs between operating systems, one concern per module, so that the rest of
//! the driver reads the same everywhere:
//! - [`dir`]: files and directories reached relative to a directory handle, never
//!   through a link; the output folder's exclusive lock;
//! - [`sync`]: making written data durable, and write-behind;
//! - [`meta`]: permission bits and the umask, free space, the largest file a file system
//!   holds.

pub mod dir;
pub mod meta;
pub mod sync;
