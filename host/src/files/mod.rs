//! File handling shared by the stores, the locks and the compiled-component cache: crash-safe
//! replacement of a file in two halves ([`replace`]), who owns what this code writes
//! ([`ownership`]), paths recorded as bytes ([`path_bytes`]), and a directory's times ([`times`]). Nothing here knows what a
//! credential is.

#[cfg(unix)]
pub(crate) mod ownership;
pub(crate) mod path_bytes;
pub(crate) mod replace;
pub(crate) mod times;

pub(crate) use replace::{
    Prepared, create_private_dir, is_temp_name, overwrite_in_place, parent_of, prepare, temp_path,
    write_at_start, write_atomically, write_target,
};
