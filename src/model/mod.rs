//! SiT and TiT networks, generic over the backend. (Being written.)

pub mod config;

use crate::backend::Backend;

/// A network with its parameters on a backend.
pub struct Model<B: Backend> {
    _b: std::marker::PhantomData<B>,
}
