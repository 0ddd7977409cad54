//! What the tests, the benchmarks and the plugin-host example share and the product does not
//! ship: loopback stand-ins for the services ([`loopback`]) and the test components
//! ([`components`]). Not published.

pub mod components;
pub mod loopback;
