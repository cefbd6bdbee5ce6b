// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/.cache/**', 'data/**'] },
  js.configs.recommended,
  // type-aware rules (no floating promises, no unsafe any) on TypeScript
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-constant-condition': ['error', { checkLoops: false }],
      // async implementations of async interfaces need not await anything
      '@typescript-eslint/require-await': 'off',
    },
  },
  // the browser ignores what a DOM listener returns; async listeners catch their own errors
  {
    files: ['client/src/**/*.ts'],
    rules: {
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false } },
      ],
    },
  },
  // vitest's asymmetric matchers (expect.stringMatching, expect.any) are typed `any`
  {
    files: ['**/test/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  // plain JavaScript (test helpers run as separate processes) has no types to check
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  // settings come from the environment once, in the config module (12-factor); everything
  // else takes typed options
  {
    files: ['server/src/**/*.ts'],
    ignores: ['server/src/config/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message: 'only server/src/config reads the environment: take a typed option instead',
        },
      ],
    },
  },
);
