//! What differs between operating systems, one concern per module, so that the rest of
//! the driver reads the same everywhere:
//! - [`dir`]: files and directories reached relative to a directory handle, never
//!   through a link; the output folder's exclusive lock;
//! - [`sync`]: making written data durable, and write-behind;
//! - [`meta`]: permission bits, times and the umask, free space, the largest file a file
//!   system holds;
//! - [`io`]: reading and writing at an offset;
//! - [`net`]: waiting for a connection while watching for Ctrl-C;
//! - [`names`]: names a receiving system cannot hold (Windows' device names);
//! - [`programs`]: where the Tailscale command line is installed.

pub mod dir;
pub mod io;
pub mod meta;
pub mod names;
pub mod net;
pub mod programs;
pub mod sync;
