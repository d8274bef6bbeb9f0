"""What the test suite and the benchmarks share: valuestream workers as processes of their
own application (topic prefix, consumer group, local state), observed through their HTTP
API and metrics, and loading and reading topics on a real broker. Not part of the installed
package."""
