;; Stored 16-bit CT samples to Hounsfield units, eight pixels per step with WebAssembly SIMD.
;; The caller places `count` little-endian samples at `input`, rounded up to a multiple of
;; eight with any values, and reads `count` float32 values from `output`.
;;
;; Each sample keeps its low `bitsStored` bits: for PixelRepresentation 1 they are
;; sign-extended by a left shift then an arithmetic right shift by 16 - bitsStored, for 0
;; the high bits are masked off. The value v becomes v * slope + intercept in float32, and
;; values in [padLow, padHigh] become padValue (padLow > padHigh for no padding). The caller uses this kernel only when that
;; float32 arithmetic is exact (integer slope and intercept, results below 2^24), so it
;; gives the same numbers as the scalar path, which computes in float64 and rounds once.
(module
  (memory (export "memory") 1)
  (func (export "rescale16")
    (param $input i32) (param $output i32) (param $count i32)
    (param $bitsStored i32) (param $signed i32)
    (param $slope f32) (param $intercept f32)
    (param $padLow i32) (param $padHigh i32) (param $padValue f32)
    (local $end i32) (local $shift i32) (local $mask v128)
    (local $samples v128) (local $low v128) (local $high v128)
    (local $slopes v128) (local $intercepts v128)
    (local $padLows v128) (local $padHighs v128) (local $padValues v128)
    (local.set $shift (i32.sub (i32.const 16) (local.get $bitsStored)))
    (local.set $mask (i16x8.splat (i32.sub (i32.shl (i32.const 1) (local.get $bitsStored)) (i32.const 1))))
    (local.set $slopes (f32x4.splat (local.get $slope)))
    (local.set $intercepts (f32x4.splat (local.get $intercept)))
    (local.set $padLows (i32x4.splat (local.get $padLow)))
    (local.set $padHighs (i32x4.splat (local.get $padHigh)))
    (local.set $padValues (f32x4.splat (local.get $padValue)))
    (local.set $end (i32.add (local.get $input) (i32.shl (local.get $count) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $input) (local.get $end)))
        (local.set $samples (v128.load (local.get $input)))
        (if (local.get $signed)
          (then
            (local.set $samples
              (i16x8.shr_s (i16x8.shl (local.get $samples) (local.get $shift)) (local.get $shift)))
            (local.set $low (i32x4.extend_low_i16x8_s (local.get $samples)))
            (local.set $high (i32x4.extend_high_i16x8_s (local.get $samples))))
          (else
            (local.set $samples (v128.and (local.get $samples) (local.get $mask)))
            (local.set $low (i32x4.extend_low_i16x8_u (local.get $samples)))
            (local.set $high (i32x4.extend_high_i16x8_u (local.get $samples)))))
        ;; Pixels 0 to 3, then 4 to 7: v * slope + intercept, or padValue inside the padding range.
        (v128.store (local.get $output)
          (v128.bitselect
            (local.get $padValues)
            (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $low)) (local.get $slopes)) (local.get $intercepts))
            (v128.and (i32x4.ge_s (local.get $low) (local.get $padLows))
              (i32x4.le_s (local.get $low) (local.get $padHighs)))))
        (v128.store offset=16 (local.get $output)
          (v128.bitselect
            (local.get $padValues)
            (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $high)) (local.get $slopes)) (local.get $intercepts))
            (v128.and (i32x4.ge_s (local.get $high) (local.get $padLows))
              (i32x4.le_s (local.get $high) (local.get $padHighs)))))
        (local.set $input (i32.add (local.get $input) (i32.const 16)))
        (local.set $output (i32.add (local.get $output) (i32.const 32)))
        (br $next)))))
