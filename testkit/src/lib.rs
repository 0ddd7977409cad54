//! What the tests, the benchmarks and the plugin-host example share and the product does not
//! ship: loopback stand-ins for the services ([`loopback`]), the test components
//! ([`components`]) and a real `redis-server` to run ([`redis_server`]). Not published.

pub mod components;
pub mod loopback;
pub mod redis_server;
