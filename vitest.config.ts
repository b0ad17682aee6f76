import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The Debian peers (redis-server, thrift-compiler, zookeeper…) are installed once, before any suite runs.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites start real servers; two cores, so keep files from fighting over them.
    fileParallelism: false,
  },
});
