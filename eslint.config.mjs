import { readFileSync } from 'fs';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
// Import cycles: import-x/no-cycle here (also in the editor) and test/unit/architecture.test.ts.
import importX, { createNodeResolver } from 'eslint-plugin-import-x';

// The layers of src/ and what each may import: docs/architecture.md, layers.json.
const layers = Object.fromEntries(
  Object.entries(JSON.parse(readFileSync(new URL('./layers.json', import.meta.url), 'utf8'))).filter(([k]) => k !== '//'),
);
const layerRules = Object.entries(layers).map(([layer, allowed]) => {
  const forbidden = Object.keys(layers).filter((l) => l !== layer && !allowed.includes(l));
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: forbidden.length === 0 ? [] : [{
          group: forbidden.flatMap((l) => [`../${l}`, `../${l}/*`]),
          message: `src/${layer} may import only ${allowed.length ? allowed.join(', ') : 'nothing of src'} (docs/architecture.md, layers.json)`,
        }],
      }],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/**', 'native/build/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  ...layerRules,
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: { 'import-x/extensions': ['.ts', '.js'], 'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js'] })] },
    rules: { 'import-x/no-cycle': 'error' },
  },
);
