// A Rust program for the demangling tests (tests/integration/test_demangle_rust.py):
// a method of an inherent impl, a closure, a generic function, and a NULL write
// when the first argument is 7. Built by the test with rustc, both manglings.
use std::collections::HashMap;

mod shapes {
    pub struct Square(pub u32);

    impl Square {
        #[inline(never)]
        pub fn area(&self) -> u32 {
            if self.0 == 7 {
                crash()
            }
            self.0 * self.0
        }
    }

    #[inline(never)]
    fn crash() -> ! {
        unsafe { std::ptr::null_mut::<u32>().write_volatile(1) }
        loop {}
    }
}

#[inline(never)]
fn describe<T: std::fmt::Debug>(x: T) -> String {
    format!("{:?}", x)
}

fn main() {
    let n: u32 = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(3);
    let mut seen = HashMap::new();
    seen.insert(n, describe(vec![n]));
    let area = |k: u32| shapes::Square(k).area();
    println!("{} {:?}", area(n), seen);
}
