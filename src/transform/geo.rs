//! The distance between two points of the Earth, as the model's features measure it (the
//! payment's place to its merchant's, and a card's merchants one after the other).

use std::f64::consts::PI;

const EARTH_RADIUS_KM: f64 = 6371.0;

fn rad(degrees: f64) -> f64 {
    degrees * PI / 180.0
}

pub fn haversine_km(lat: f64, long: f64, merch_lat: f64, merch_long: f64) -> f64 {
    let (phi1, phi2) = (rad(lat), rad(merch_lat));
    let d_phi = rad(merch_lat - lat);
    let d_lambda = rad(merch_long - long);
    let a = (d_phi / 2.0).sin() * (d_phi / 2.0).sin()
        + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin() * (d_lambda / 2.0).sin();
    (2.0 * EARTH_RADIUS_KM) * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_of_one_degree_of_latitude() {
        let d = haversine_km(0.0, 0.0, 1.0, 0.0);
        assert!((d - 111.195).abs() < 0.001, "{d}");
    }
}
