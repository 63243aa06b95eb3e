//! Optimizer updates, EMA and gradient utilities over flat parameter buffers.
//! (Being written: see the trainer issue.)

use super::Elem;
use crate::backend::OptimHp;

pub fn adamw_step<T: Elem>(_p: &mut [T], _g: &[T], _m: &mut [T], _v: &mut [T], _hp: &OptimHp, _step: u64) {
    todo!("adamw_step")
}
pub fn radam_step<T: Elem>(_p: &mut [T], _g: &[T], _m: &mut [T], _v: &mut [T], _hp: &OptimHp, _step: u64) {
    todo!("radam_step")
}
pub fn ema<T: Elem>(_src: &[T], _dst: &mut [T], _decay: f64) {
    todo!("ema")
}
pub fn sum_squares<T: Elem>(_x: &[T]) -> f64 {
    todo!("sum_squares")
}
pub fn scale<T: Elem>(_x: &mut [T], _s: f64) {
    todo!("scale")
}
pub fn zero_non_finite<T: Elem>(_x: &mut [T]) {
    todo!("zero_non_finite")
}
