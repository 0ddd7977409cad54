//! What the tests, the benchmarks and the plugin-host example share and the product does not
//! ship: loopback stand-ins for the services ([`loopback`]), the test components
//! ([`components`]) a real `redis-server` to run ([`redis_server`]) and a proxy that
//! freezes a client holding a lease ([`redis_proxy`]). Not published.

pub mod components;
pub mod loopback;
pub mod redis_proxy;
pub mod redis_server;
