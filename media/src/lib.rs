//! Media: uploaded objects and what is done to them; for now the image processing.

pub mod image;
