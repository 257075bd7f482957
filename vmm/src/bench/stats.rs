//! The statistics of `flint bench`: percentiles, mean and standard
//! deviation, and the A/B test of `--compare` — Mann–Whitney U (normal
//! approximation with tie and continuity corrections), the Hodges–Lehmann
//! shift and Cliff's delta. Pure functions on slices of samples.

/// Percentile `p` (0–100) of `v` by linear interpolation between the
/// closest ranks (numpy's default, R's type 7); NaN for no data.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let s = sorted(v);
    let pos = (p.clamp(0.0, 100.0) / 100.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// The median of `v`; NaN for no data.
pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Arithmetic mean; NaN for no data.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (n − 1 in the denominator); NaN below two samples.
pub fn stdev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = mean(v);
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (v.len() - 1) as f64).sqrt()
}

/// The figures printed for one phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// 50th percentile.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub stdev: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarise `v` (NaN figures when empty).
    pub fn of(v: &[f64]) -> Summary {
        Summary {
            n: v.len(),
            median: median(v),
            p10: percentile(v, 10.0),
            p90: percentile(v, 90.0),
            mean: mean(v),
            stdev: stdev(v),
            min: percentile(v, 0.0),
            max: percentile(v, 100.0),
        }
    }
}

/// The result of a Mann–Whitney U test of `a` (baseline) against `b` (new).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the baseline: pairs (a, b) with a > b, ties counted half.
    pub u_a: f64,
    /// U of the new sample: pairs with b > a, ties half; `u_a + u_b = n_a·n_b`.
    pub u_b: f64,
    /// Standard normal deviate of `u_b`, continuity-corrected.
    pub z: f64,
    /// Two-sided p-value from the normal approximation.
    pub p: f64,
    /// One-sided p-value for "`b` tends to be larger than `a`".
    pub p_greater: f64,
    /// One-sided p-value for "`b` tends to be smaller than `a`".
    pub p_less: f64,
}

/// Mann–Whitney U test of `a` against `b`: mid-ranks for ties, the tie
/// correction of the variance, a continuity correction of 0.5, and the
/// p-values from the normal approximation, two-sided and one-sided (good
/// for n ≥ ~20 per side; conservative for fewer). `None` when either side
/// is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let n = na + nb;
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let j = i + all[i..].iter().take_while(|x| x.0 == all[i].0).count();
        // Ranks i+1 ..= j share their mean.
        let mid = (i + 1 + j) as f64 / 2.0;
        rank_sum_a += mid * all[i..j].iter().filter(|x| x.1).count() as f64;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        i = j;
    }
    let u_a = rank_sum_a - na * (na + 1.0) / 2.0;
    let u_b = na * nb - u_a;
    let mu = na * nb / 2.0;
    let var = na * nb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        // Every sample equal: no evidence of any shift.
        return Some(MannWhitney {
            u_a,
            u_b,
            z: 0.0,
            p: 1.0,
            p_greater: 1.0,
            p_less: 1.0,
        });
    }
    let (d, sd) = (u_b - mu, var.sqrt());
    let z = if d.abs() <= 0.5 {
        0.0
    } else {
        (d - 0.5 * d.signum()) / sd
    };
    // P(Z ≥ x) for a standard normal Z.
    let upper = |x: f64| 0.5 * erfc(x / std::f64::consts::SQRT_2);
    Some(MannWhitney {
        u_a,
        u_b,
        z,
        p: (2.0 * upper(z.abs())).min(1.0),
        p_greater: upper((d - 0.5) / sd),
        p_less: upper((-d - 0.5) / sd),
    })
}

/// The Hodges–Lehmann estimate of the shift from `a` to `b`: the median
/// of all pairwise differences `b_j − a_i`; NaN when either is empty.
pub fn hodges_lehmann(a: &[f64], b: &[f64]) -> f64 {
    let diffs: Vec<f64> = b
        .iter()
        .flat_map(|y| a.iter().map(move |x| y - x))
        .collect();
    median(&diffs)
}

/// Cliff's delta of `b` over `a`: P(b > a) − P(b < a), from −1 (every new
/// sample smaller) to +1 (every new sample larger); NaN when either is empty.
pub fn cliffs_delta(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    let mut score = 0i64;
    for y in b {
        for x in a {
            score += match y.total_cmp(x) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    score as f64 / (a.len() * b.len()) as f64
}

/// The complementary error function, by the Chebyshev fit of Numerical
/// Recipes (`erfcc`): relative error below 1.2e-7 everywhere.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&v), 2.5);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        // Rank position 0.1·(11−1) = 1 → the second smallest of 1..=11.
        let w: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(percentile(&w, 10.0), 2.0);
        assert_eq!(percentile(&w, 90.0), 10.0);
        assert!(close(percentile(&v, 10.0), 1.3, 1e-12));
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn stdev_uses_n_minus_one() {
        // mean 5, squared deviations sum to 32, 32 / 7 = 4.5714…
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&v), 5.0);
        assert!(close(stdev(&v), (32.0f64 / 7.0).sqrt(), 1e-12));
        assert!(stdev(&[1.0]).is_nan());
    }

    #[test]
    fn summary_collects_every_figure() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            (s.n, s.median, s.min, s.max, s.mean),
            (5, 3.0, 1.0, 5.0, 3.0)
        );
        assert!(close(s.p10, 1.4, 1e-12) && close(s.p90, 4.6, 1e-12));
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_example_with_ties() {
        // a = 1 2 2 3, b = 2 4 5. Sorted: 1a 2a 2a 2b 3a 4b 5b; the three
        // 2s share rank 3. R_a = 1+3+3+5 = 12, U_a = 12 − 4·5/2 = 2,
        // U_b = 4·3 − 2 = 10. μ = 6; one tie group of 3 → Σ(t³−t) = 24;
        // σ² = 4·3/12 · (8 − 24/42) = 7.428571; z = (10 − 6 − 0.5)/2.725541
        // = 1.284149; p = erfc(z/√2) = 0.199090.
        let r = mann_whitney(&[1.0, 2.0, 2.0, 3.0], &[2.0, 4.0, 5.0]).unwrap();
        assert_eq!((r.u_a, r.u_b), (2.0, 10.0));
        assert!(close(r.z, 1.284_149, 1e-5), "{r:?}");
        assert!(close(r.p, 0.199_090, 1e-5), "{r:?}");
        // One-sided: P(Z ≥ 3.5/σ) = 0.099545, P(Z ≥ −4.5/σ) = 0.950636.
        assert!(close(r.p_greater, 0.099_545, 1e-5), "{r:?}");
        assert!(close(r.p_less, 0.950_636, 1e-5), "{r:?}");
    }

    #[test]
    fn mann_whitney_of_separated_samples_without_ties() {
        // a = 1 2 3, b = 4 5 6: U_a = 0, U_b = 9, μ = 4.5, σ² = 9/12 · 7 =
        // 5.25; z = (9 − 4.5 − 0.5)/2.291288 = 1.745743; p = 0.080856.
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!((r.u_a, r.u_b), (0.0, 9.0));
        assert!(
            close(r.z, 1.745_743, 1e-5) && close(r.p, 0.080_856, 1e-5),
            "{r:?}"
        );
        // One-sided, P(Z ≥ 4/σ) = 0.040428 and P(Z ≥ −5/σ) = 0.985452.
        assert!(close(r.p_greater, 0.040_428, 1e-5) && close(r.p_less, 0.985_452, 1e-5));
        // Swapping the sides flips the sign of z and the one-sided tests.
        let s = mann_whitney(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!(close(s.z, -r.z, 1e-12) && close(s.p, r.p, 1e-12));
        assert!(close(s.p_less, r.p_greater, 1e-12));
    }

    #[test]
    fn mann_whitney_of_identical_samples_gives_p_one() {
        let r = mann_whitney(&[5.0; 10], &[5.0; 10]).unwrap();
        assert_eq!((r.z, r.p), (0.0, 1.0));
        let v: Vec<f64> = (0..20).map(f64::from).collect();
        assert!(mann_whitney(&v, &v).unwrap().p > 0.99);
        assert!(mann_whitney(&[], &v).is_none());
    }

    #[test]
    fn mann_whitney_flags_a_clear_shift_at_twenty_samples() {
        let a: Vec<f64> = (0..20).map(|i| 1000.0 + f64::from(i % 7) * 10.0).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 200.0).collect();
        let r = mann_whitney(&a, &b).unwrap();
        assert_eq!(r.u_b, 400.0);
        assert!(r.p < 1e-6, "{r:?}");
    }

    #[test]
    fn hodges_lehmann_and_cliffs_delta_match_hand_computation() {
        // b − a for a = 1 2 2 3, b = 2 4 5: −1 0 0 1 1 2 2 2 3 3 3 4,
        // median (2 + 2)/2 = 2. Nine pairs b > a, one b < a, two ties:
        // δ = (9 − 1)/12.
        let (a, b) = ([1.0, 2.0, 2.0, 3.0], [2.0, 4.0, 5.0]);
        assert_eq!(hodges_lehmann(&a, &b), 2.0);
        assert!(close(cliffs_delta(&a, &b), 8.0 / 12.0, 1e-12));
        assert_eq!(cliffs_delta(&b, &b), 0.0);
        assert!(hodges_lehmann(&[], &b).is_nan());
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
        assert!(close(erfc(3.0), 2.209_049_7e-5, 1e-9));
    }
}
