//! Pixel comparisons for checking outputs against references.

#![allow(dead_code)]

use image::DynamicImage;

/// Mean absolute difference per channel sample, from 0 to 255.
pub fn mean_absolute_difference(first: &DynamicImage, second: &DynamicImage) -> f64 {
    let (first, second) = (first.to_rgb8(), second.to_rgb8());
    assert_eq!(first.dimensions(), second.dimensions());
    let total: u64 = first
        .as_raw()
        .iter()
        .zip(second.as_raw())
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    total as f64 / first.as_raw().len() as f64
}

/// Root mean square error per channel sample, as a fraction of full scale.
pub fn rmse(first: &DynamicImage, second: &DynamicImage) -> f64 {
    let (first, second) = (first.to_rgb8(), second.to_rgb8());
    assert_eq!(first.dimensions(), second.dimensions());
    let sum: f64 = first
        .as_raw()
        .iter()
        .zip(second.as_raw())
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum();
    (sum / first.as_raw().len() as f64).sqrt() / 255.0
}
