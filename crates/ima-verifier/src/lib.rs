#![doc = include_str!("../README.md")]

pub mod dpkg;
pub mod keylime;
