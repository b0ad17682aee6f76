/** The example KV-RPC codec (examples/custom-codec/codec.ts), loaded as a user codec would be, through the suite. */
import kvrpcCodec from '../../examples/custom-codec/codec.js';
import { kvrpcFixture } from './kvrpc.fixture.js';
import { runConformance } from './suite.js';

runConformance('kvrpc (examples/custom-codec)', kvrpcFixture(kvrpcCodec));
